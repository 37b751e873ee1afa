"""Every configuration field with its default; experiment configs derive from this and override a few.

Override any field on the command line: `--config.optimizer.learning_rate=0.05`.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    """Returns the default configuration: a small CNN on scikit-learn's bundled digits."""
    config = ml_collections.ConfigDict()

    config.seed = 0  # seeds parameter init, data order, augmentation and dropout
    config.vmap_seeds = 0  # K > 1: train seeds seed..seed+K-1 side by side in one vmapped program, workdir/seed=<s>
    config.batch_size = 128  # global batch, split evenly over all devices
    config.eval_batch_size = 0  # 0 = batch_size; evaluation pads the last batch and masks the padding
    config.num_epochs = 10  # epochs to train (early stopping may end sooner)
    config.loss = "softmax_cross_entropy"  # see dl4cv_jax.losses.LOSSES
    config.label_smoothing = 0.0  # for softmax_cross_entropy: 0.1 mixes 10% uniform mass into the targets
    config.log_every_steps = 20  # console progress and NaN checks every N steps
    config.precision = "float32"  # float32 | bfloat16 (bf16 compute; params, optimizer, BN stats, loss in float32)
    config.ema_decay = 0.0  # > 0 (e.g. 0.999): keep an EMA of the weights, used for evaluation and checkpointed
    config.grad_accum_steps = 1  # average gradients over K batches of batch_size before each optimizer update
    config.eval_tta = ()  # test-time augmentation in evaluation: any of flip, translate (probabilities averaged)
    # auto | xla | cpu: the layers' implementation (dl4cv_jax/backends): xla = Flax's layers on any platform;
    # cpu = the same variables on oneDNN kernels; auto = cpu on a single CPU device, xla everywhere else.
    config.backend = "auto"
    config.profile_steps = 0  # > 0: jax.profiler trace of N train steps (after compilation) in workdir/profile

    # --- Model -----------------------------------------------------------------------------------------
    config.model = ml_collections.ConfigDict()
    config.model.name = "cnn"  # see dl4cv_jax.models.MODELS (mlp, lenet, cnn, vgg11..19[_bn], resnet18..152, ...)
    config.model.norm = "batch"  # batch | group | instance | layer | none (models with normalisation)
    config.model.dropout_rate = 0.0  # dropout before the classifier (VGG/MLP/AlexNet hidden layers too; DenseNet and
    # ViT place it inside their blocks, as torchvision does: see each model file)
    config.model.stem = "imagenet"  # imagenet (torchvision's) or cifar (for 32x32: e.g. ResNet 3x3/1, no pool)
    config.model.width = 32  # cnn: channels of the first conv block (doubled in the second)
    config.model.hidden_sizes = (256, 128)  # mlp: widths of the hidden layers
    config.model.group_norm_groups = 32  # groups for norm=group (reduced to divide the channels)
    config.model.bn_momentum = 0.9  # BatchNorm running-average momentum (Keras/Flax convention)
    # Start from other weights (docs/pretrained.md): a PyTorch (.pth/.pt/.th) or .safetensors file of this model,
    # or one of our workdirs (its best checkpoint). A classifier of another class count keeps its fresh init.
    config.model.pretrained = ""
    config.model.init_from = ""

    # --- Fine-tuning (docs/pretrained.md) ---------------------------------------------------------------
    config.finetune = ml_collections.ConfigDict()
    config.finetune.freeze = ""  # regex over parameter paths ("layer1_0/conv1/kernel"); matches are not trained
    config.finetune.lr_mults = ()  # ((regex, multiplier), ...): first match scales that parameter's learning rate

    # --- Data ------------------------------------------------------------------------------------------
    config.data = ml_collections.ConfigDict()
    config.data.source = "digits"  # tfds | folder | numpy (.npz of x_train, y_train, ...) | digits | synthetic
    config.data.name = ""  # tfds dataset name, e.g. cifar10 (source=tfds); display name for folder / numpy
    config.data.dir = ""  # folder root (folder), .npz file (numpy) or tfds data_dir (tfds; '' = tfds default)
    config.data.image_size = 0  # resize to image_size x image_size; 0 = keep the source's size
    config.data.resize_method = "bilinear"  # bilinear | nearest | bicubic | area | lanczos3 | lanczos5 | ...
    config.data.resize_shorter = 0  # > 0: shorter side to this (aspect kept), then centre image_size crop (256 / 224)
    config.data.channels = 0  # 1 or 3 to convert; 0 = keep the source's channels
    config.data.skip_corrupt = False  # folder: skip (and count) unreadable image files instead of stopping
    config.data.max_train_examples = 0  # stratified subset of train for quick runs; 0 = all
    config.data.val_fraction = 0.2  # of the train pool, carved (stratified) when the source has no validation split
    config.data.test_fraction = 0.2  # of the train pool, carved (stratified) when the source has no test split
    config.data.train_split = "train"  # tfds split names
    config.data.val_split = ""  # tfds validation split; '' = carve a stratified slice from train
    config.data.test_split = "test"
    config.data.augment = ()  # in order, e.g. ("crop(4)", "flip", "rotate(15)") or "crop,flip"; see data/augment.py
    config.data.crop_padding = 4  # pixels of padding for a random crop given without a padding ("crop")
    config.data.mean = ()  # per-channel mean in [0, 1]; () = measured on the training images
    config.data.std = ()  # per-channel std in [0, 1]; () = measured on the training images
    config.data.preprocessing = ""  # preset: imagenet | imagenet_stats; '' = what model.pretrained records
    config.data.max_in_memory_mb = 2048  # splits smaller than this (decoded) are held in memory, larger ones streamed
    config.data.shuffle_buffer = 0  # tfds streaming shuffle buffer; 0 = 16 x batch_size
    config.data.pipeline = "tfdata"  # tfdata | device (in-memory data kept and augmented on the accelerator)
    config.data.scan_epoch = False  # pipeline=device: each epoch one compiled lax.scan, no Python per step
    config.data.synthetic_examples = 512  # source=synthetic: examples per split (train; val/test get 1/4)
    config.data.synthetic_classes = 10  # source=synthetic: number of classes
    config.data.synthetic_shape = (32, 32, 3)  # source=synthetic: H, W, C

    # --- Cross-validation --------------------------------------------------------------------------------
    config.cv = ml_collections.ConfigDict()
    config.cv.folds = 0  # > 1: k-fold cross-validation, one run per fold in workdir/fold_K (0 or 1 = off)
    config.cv.fold = -1  # the fold used as validation in this run; -1 = run every fold (set per fold by the CV)

    # --- Optimizer (optax) -----------------------------------------------------------------------------
    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "nesterov"  # see dl4cv_jax.optim.OPTIMIZERS
    config.optimizer.learning_rate = 0.05  # peak learning rate (after warmup)
    config.optimizer.momentum = 0.9  # momentum / nesterov / rmsprop
    config.optimizer.b1 = 0.9  # adam-family and lion first-moment decay
    config.optimizer.b2 = 0.999  # adam-family second-moment decay (lion uses 0.99 in its paper)
    config.optimizer.eps = 1e-8  # adam-family, adagrad, rmsprop, adadelta epsilon
    config.optimizer.weight_decay = 0.0  # 0 = none; biases and normalisation parameters are never decayed
    config.optimizer.weight_decay_mode = "auto"  # l2 | decoupled | auto (decoupled for adamw/lamb/lion, else l2)
    config.optimizer.grad_clip_norm = 0.0  # clip gradients by global norm; 0 = off

    # --- Learning-rate schedule (optax) ----------------------------------------------------------------
    config.schedule = ml_collections.ConfigDict()
    config.schedule.name = "cosine"  # see dl4cv_jax.schedules.SCHEDULES
    config.schedule.warmup_epochs = 0.0  # linear warmup from 0 before any schedule
    config.schedule.end_fraction = 0.0  # cosine/polynomial/linear: final lr as a fraction of the peak
    config.schedule.decay_rate = 0.1  # exponential: factor per decay_epochs; step: factor at each boundary
    config.schedule.decay_epochs = 30.0  # exponential / inverse_time: epochs per decay_rate step
    config.schedule.boundaries_epochs = (0.5, 0.75)  # step: boundaries as fractions of the training run
    config.schedule.power = 1.0  # polynomial power
    config.schedule.staircase = False  # exponential / inverse_time: decay in discrete steps
    config.schedule.pct_start = 0.3  # one_cycle: fraction of the run spent rising
    config.schedule.plateau_factor = 0.1  # reduce_on_plateau: lr multiplier when the monitor stalls
    config.schedule.plateau_patience = 3  # reduce_on_plateau: epochs without improvement before reducing
    config.schedule.plateau_min_delta = 1e-4  # reduce_on_plateau: smallest change that counts as better
    config.schedule.plateau_cooldown = 0  # reduce_on_plateau: epochs to wait after a reduction

    # --- Checkpoints and early stopping ----------------------------------------------------------------
    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.monitor = "val_accuracy"  # val_loss (lower is better) | val_accuracy (higher is better)
    config.checkpoint.every_steps = 0  # > 0: also save latest every N steps, mid-epoch (long epochs); 0 = off
    config.early_stopping = ml_collections.ConfigDict()
    config.early_stopping.patience = 0  # epochs without improvement of checkpoint.monitor; 0 = off
    config.early_stopping.min_delta = 0.0  # smallest improvement that resets the patience

    # --- Debugging aids ---------------------------------------------------------------------------------
    config.debug = ml_collections.ConfigDict()
    config.debug.overfit_batches = 0  # > 0: train every epoch on the same first N batches (loss should reach ~0)

    return config
