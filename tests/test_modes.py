"""The mode table behind `main.py --mode=...`: each mode hands the command line's values to the right library
function, and main.py only dispatches (its error lines and exit codes: tests/test_main.py, tests/test_bad_input.py)."""

import pathlib
import subprocess
import sys

import pytest

from dl4cv_jax import modes
from dl4cv_jax.modes import MODES, Command
from tests.conftest import REPO, tiny_digits_config


class Recorder:
    """Stands in for a library function and keeps the arguments it was called with."""

    def __init__(self, result=None):
        self.calls, self.result = [], result

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.result


def _main_module():
    sys.path.insert(0, str(REPO))
    import main

    return main


def test_the_mode_flag_offers_the_table_and_command_defaults_are_the_flags_defaults():
    main = _main_module()
    assert main.FLAGS["mode"].parser.enum_values == list(MODES)
    assert set(MODES) == {
        "train",
        "eval",
        "predict",
        "compare",
        "compare_models",
        "preview",
        "sweep",
        "reproduce",
        "lr_find",
        "eval_detection",
        "eval_segmentation",
        "eval_tracking",
        "eval_regression",
    }
    defaults = Command()
    for name in main.MODE_FLAGS:  # each mode-specific flag is a Command field with the flag's default
        assert getattr(defaults, name) == (
            tuple(main.FLAGS[name].default) if name in ("images", "models") else main.FLAGS[name].default
        )
    assert defaults.config_path == main.config_flags.get_config_filename(main.FLAGS["config"])


def test_importing_main_and_the_modes_loads_no_jax():
    """main.py imports the table before configure_process(restart=True) may re-execute it under jemalloc."""
    code = "import sys; sys.argv = ['main.py']; import main; print('jax' in sys.modules, 'tensorflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False False", result.stderr[-2000:]


def test_default_workdir_is_named_after_the_config_or_the_sweep():
    assert Command(config_path="configs/resnet_cifar.py").run_dir == pathlib.Path("runs/resnet_cifar")
    assert Command(config_path="configs/resnet_cifar.py", workdir=pathlib.Path("x")).run_dir == pathlib.Path("x")
    assert modes.default_workdir("experiments/optimizers.py") == pathlib.Path("runs/optimizers")


@pytest.mark.parametrize(
    ("fields", "module", "function"),
    [
        ({}, "dl4cv_jax.train.loop", "train_and_evaluate"),
        ({"cv__folds": 3}, "dl4cv_jax.cross_validation", "run_cross_validation"),
        ({"vmap_seeds": 2}, "dl4cv_jax.vmap_seeds", "train_vmapped"),
    ],
)
def test_train_picks_plain_k_fold_or_vmapped_seeds(fields, module, function, monkeypatch):
    chosen = Recorder()
    others = [Recorder(), Recorder(), Recorder()]
    targets = [
        ("dl4cv_jax.train.loop", "train_and_evaluate"),
        ("dl4cv_jax.cross_validation", "run_cross_validation"),
        ("dl4cv_jax.vmap_seeds", "train_vmapped"),
    ]
    for (mod, name), other in zip(targets, others, strict=True):
        monkeypatch.setattr(f"{mod}.{name}", chosen if (mod, name) == (module, function) else other)
    config = tiny_digits_config(**fields)
    assert MODES["train"](Command(config=config, workdir=pathlib.Path("w"))) is None
    assert chosen.calls == [((config, pathlib.Path("w")), {})]
    assert all(not other.calls for other in others)


def test_eval_and_predict_pass_their_flags(monkeypatch):
    run_eval, run_predict = Recorder(), Recorder()
    monkeypatch.setattr("dl4cv_jax.evaluate.cli.run_eval", run_eval)
    monkeypatch.setattr("dl4cv_jax.evaluate.cli.run_predict", run_predict)
    workdir = pathlib.Path("runs/x")
    MODES["eval"](Command(workdir=workdir, split="val", checkpoint="latest", tta="none"))
    assert run_eval.calls == [((workdir, "val", "latest"), {"tta": ()})]
    # `--images a.png b.png`: absl gives the flag the first image; the others arrive as positional arguments.
    MODES["predict"](Command(workdir=workdir, images=("a.png",), args=("b.png",), top_k=3, tta="flip"))
    assert run_predict.calls == [((workdir, ["a.png", "b.png"], "best", 3, ("flip",)), {})]


def test_compare_preview_and_lr_find(monkeypatch, tmp_path):
    run_compare, write_preview, lr_find = Recorder(), Recorder(tmp_path / "augmentations.png"), Recorder()
    monkeypatch.setattr("dl4cv_jax.evaluate.cli.run_compare", run_compare)
    monkeypatch.setattr("dl4cv_jax.data.preview.write_preview", write_preview)
    monkeypatch.setattr("dl4cv_jax.lr_find.lr_find", lr_find)
    MODES["compare"](Command(args=("runs/a", "runs/b"), output="c.png"))
    assert run_compare.calls == [((["runs/a", "runs/b"], "c.png"), {})]
    config = tiny_digits_config()
    for mode, recorder in [("preview", write_preview), ("lr_find", lr_find)]:
        MODES[mode](Command(config=config, workdir=tmp_path))
        assert recorder.calls == [((config, tmp_path), {})]


def test_compare_models_passes_its_flags_and_defaults_its_output(monkeypatch):
    compare_models = Recorder()
    monkeypatch.setattr("dl4cv_jax.evaluate.compare_models.compare_models", compare_models)
    command = Command(models=("resnet20=r.th",), args=("runs/a",), data_dir="d", class_map="m.txt", batch_size=64)
    MODES["compare_models"](command)
    ((args, kwargs),) = compare_models.calls
    assert args == (["resnet20=r.th", "runs/a"], "d", pathlib.Path("runs/compare_models"))
    assert kwargs.pop("base_config").model.name == "cnn"  # configs/default.py: weight files bring their model
    assert kwargs == {"class_map": "m.txt", "checkpoint": "best", "batch_size": 64}


@pytest.mark.parametrize(("statuses", "failure"), [(["done", "done"], None), (["done", "failed"], "1 of 2 trials")])
def test_sweep_reports_unfinished_trials(statuses, failure, monkeypatch):
    results = [{"name": f"t{i}", "status": s} for i, s in enumerate(statuses)]
    run_sweep, load_sweep = Recorder(results), Recorder("the sweep")
    monkeypatch.setattr("dl4cv_jax.sweep.runner.run_sweep", run_sweep)
    monkeypatch.setattr("dl4cv_jax.sweep.load_sweep", load_sweep)
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    command = Command(sweep="experiments/optimizers.py", workers=2, config_overrides={"num_epochs": 1})
    outcome = MODES["sweep"](command)
    assert outcome is None if failure is None else outcome.startswith(failure)
    if failure:
        assert outcome.endswith("see runs/optimizers/results.md")
    assert load_sweep.calls == [(("experiments/optimizers.py",), {})]
    assert run_sweep.calls == [(("the sweep", pathlib.Path("runs/optimizers"), 2, {"num_epochs": 1}, (0, 1)), {})]


@pytest.mark.parametrize("matches", [True, False])
def test_reproduce_reports_a_difference(matches, monkeypatch):
    monkeypatch.setattr("dl4cv_jax.reproduce.reproduce", Recorder({"matches": matches, "reproduction": "runs/r"}))
    outcome = MODES["reproduce"](Command(workdir=pathlib.Path("runs/x")))
    assert outcome == (None if matches else "the reproduction differs; see runs/r/reproduce.json")
