"""Training recipes: supervised training per subject, TinyMyo's masked pretraining and
fine-tuning, and what they share. The names in parentheses are exported here; the modules hold
the rest.

- `emg_lens.train.supervised`: one model per subject with IsoNet's dual-head annealed loss
  (`TrainConfig`, `TrainResult`, `fit`, `predict`, `accuracy`, `train_subjects`,
  `dual_head_loss`, `anneal_weight`);
- `emg_lens.train.pretrain`: TinyMyo masked-signal pretraining (`PretrainConfig`,
  `PretrainHistory`, `pretrain`, `random_sample_mask`, `masked_reconstruction_loss`,
  `evaluate_masked_loss`);
- `emg_lens.train.finetune`: TinyMyo fine-tuning and linear probing from a pretrained
  checkpoint (`FinetuneConfig`, `FinetuneHistory`, `FinetuneResult`, `finetune`,
  `classifier_from_pretrained`, `dataset_accuracy`, `dataset_scores`), and the parts the other
  recipes share;
- `emg_lens.train.regression`: the same recipe with the regression head, for NinaPro DB8's
  stores (`finetune_regression`, `RegressionHistory`, `dataset_mae`, `mean_baseline_mae`);
- `emg_lens.train.per_subject`: one classifier per subject, saved for studies
  (`finetune_subjects`);
- `emg_lens.train.baseline`: the per-channel feature baseline reported beside every trained
  model (`feature_baseline`, `below_baseline`; not exported here);
- `emg_lens.train.schedule`: warm-up + cosine learning rates (`warmup_cosine_lr`,
  `warmup_cosine_scheduler`), layer-wise learning-rate decay (`layerwise_param_groups`), early
  stopping (`EarlyStopping`);
- `emg_lens.train.distributed`: DistributedDataParallel under ``torchrun``, one process
  otherwise (`DistributedRun`, `distributed_run`);
- `emg_lens.train.inputs`: the window datasets the recipes read, and synthetic ones
  (`window_dataset`, `SyntheticWindows`, `synthetic_windows`);
- `emg_lens.train.loop`: the epoch loop that pretraining and fine-tuning share, and the checks
  every loop runs to stop a training whose loss or weights become non-finite
  (`check_finite_loss`, `check_finite_weights`); none of it is exported here.
"""

from emg_lens.train.distributed import DistributedRun, distributed_run
from emg_lens.train.finetune import (
    FinetuneConfig,
    FinetuneHistory,
    FinetuneResult,
    classifier_from_pretrained,
    dataset_accuracy,
    dataset_scores,
    finetune,
)
from emg_lens.train.inputs import SyntheticWindows, synthetic_windows, window_dataset
from emg_lens.train.per_subject import finetune_subjects
from emg_lens.train.pretrain import (
    PretrainConfig,
    PretrainHistory,
    evaluate_masked_loss,
    masked_reconstruction_loss,
    pretrain,
    random_sample_mask,
)
from emg_lens.train.regression import (
    RegressionHistory,
    dataset_mae,
    finetune_regression,
    mean_baseline_mae,
)
from emg_lens.train.schedule import (
    EarlyStopping,
    layerwise_param_groups,
    warmup_cosine_lr,
    warmup_cosine_scheduler,
)
from emg_lens.train.supervised import (
    TrainConfig,
    TrainResult,
    accuracy,
    anneal_weight,
    dual_head_loss,
    fit,
    fit_until_fitted,
    predict,
    train_subjects,
)

__all__ = [
    "DistributedRun",
    "EarlyStopping",
    "FinetuneConfig",
    "FinetuneHistory",
    "FinetuneResult",
    "PretrainConfig",
    "PretrainHistory",
    "RegressionHistory",
    "SyntheticWindows",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "anneal_weight",
    "classifier_from_pretrained",
    "dataset_accuracy",
    "dataset_mae",
    "dataset_scores",
    "distributed_run",
    "dual_head_loss",
    "evaluate_masked_loss",
    "finetune",
    "finetune_regression",
    "finetune_subjects",
    "fit",
    "fit_until_fitted",
    "layerwise_param_groups",
    "masked_reconstruction_loss",
    "mean_baseline_mae",
    "predict",
    "pretrain",
    "random_sample_mask",
    "synthetic_windows",
    "train_subjects",
    "warmup_cosine_lr",
    "warmup_cosine_scheduler",
    "window_dataset",
]
