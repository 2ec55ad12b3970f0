"""Training recipes, one module each; what each module holds: docs/ARCHITECTURE.md, `train/`.
The names users reach are exported here (`baseline` and `loop` are not)."""

from emg_lens.data.synthetic.windows import SyntheticWindows, synthetic_windows
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
from emg_lens.train.inputs import window_dataset
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
    RegressionResult,
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
    "RegressionResult",
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
