"""Training recipes.

- `emg_lens.train.supervised`: one model per subject with IsoNet's dual-head annealed loss
  (`fit`, `predict`, `accuracy`, `train_subjects`);
- `emg_lens.train.pretrain`: TinyMyo masked-signal pretraining (`pretrain`, `PretrainConfig`);
- `emg_lens.train.finetune`: TinyMyo fine-tuning and linear probing from a pretrained
  checkpoint (`finetune`, `FinetuneConfig`);
- `emg_lens.train.schedule`: warm-up + cosine learning rates, layer-wise decay, early stopping;
- `emg_lens.train.distributed`: DistributedDataParallel under ``torchrun``, one process
  otherwise;
- `emg_lens.train.inputs`: the window datasets the recipes read, and synthetic ones.
"""

from emg_lens.train.distributed import DistributedRun, distributed_run
from emg_lens.train.finetune import (
    FinetuneConfig,
    FinetuneHistory,
    FinetuneResult,
    classifier_from_pretrained,
    dataset_accuracy,
    finetune,
    finetune_subjects,
)
from emg_lens.train.inputs import SyntheticWindows, synthetic_windows, window_dataset
from emg_lens.train.pretrain import (
    PretrainConfig,
    PretrainHistory,
    evaluate_masked_loss,
    masked_reconstruction_loss,
    pretrain,
    random_sample_mask,
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
    "SyntheticWindows",
    "TrainConfig",
    "TrainResult",
    "accuracy",
    "anneal_weight",
    "classifier_from_pretrained",
    "dataset_accuracy",
    "distributed_run",
    "dual_head_loss",
    "evaluate_masked_loss",
    "finetune",
    "finetune_subjects",
    "fit",
    "layerwise_param_groups",
    "masked_reconstruction_loss",
    "predict",
    "pretrain",
    "random_sample_mask",
    "synthetic_windows",
    "train_subjects",
    "warmup_cosine_lr",
    "warmup_cosine_scheduler",
    "window_dataset",
]
