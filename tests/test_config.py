"""The typed config: presets, TOML files and command-line overrides."""

import pytest

from jaguar_reid.config import Config, ConfigError, load_config, preset_names


def test_presets_are_shipped():
    assert {"eva02-large-448", "resnet50-baseline", "convnext-triplet", "lite0-cpu", "lite0-finetune"} <= set(preset_names())


def test_eva02_preset_holds_the_seed_hyperparameters():
    cfg = load_config("eva02-large-448")
    assert cfg.model.backbone == "eva02_large_patch14_448.mim_m38m_ft_in22k_in1k" and cfg.data.image_size == 448
    assert (cfg.model.pooling, cfg.model.gem_p, cfg.model.head) == ("gem", 3.0, "arcface")
    assert (cfg.model.arcface_scale, cfg.model.arcface_margin, cfg.loss.label_smoothing) == (30.0, 0.5, 0.0)
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.schedule.name, cfg.schedule.warmup_epochs) == (2e-5, 1e-3, "cosine", 0)
    assert (cfg.train.batch_size, cfg.train.grad_accumulation, cfg.train.epochs) == (4, 8, 10)
    assert (cfg.train.precision, cfg.train.channels_last, cfg.train.tf32, cfg.train.compile) == ("bf16", True, True, False)
    assert (cfg.split.split_seed, cfg.train.seed, cfg.train.selection_metric) == (314159, 42, "pair_auc")
    p = cfg.postprocess
    assert (p.flip_tta, p.aqe_k, p.aqe_alpha, p.rerank_k1, p.rerank_k2, p.rerank_lambda, p.blend_weight, p.score_transform) == (
        True, 3, 3.0, 20, 6, 0.3, 0.2, "clip")


def test_baseline_preset():
    cfg = load_config("resnet50-baseline")
    assert (cfg.model.backbone, cfg.model.embedding_dim, cfg.model.head) == ("resnet50.a1_in1k", 512, "softmax")
    assert (cfg.loss.label_smoothing, cfg.loss.triplet_weight, cfg.loss.triplet_margin) == (0.1, 0.2, 0.2)
    assert (cfg.train.sampler, cfg.train.epochs) == ("pk", 8)


def test_overrides_parse_types():
    cfg = load_config("lite0-cpu", ["train.epochs=3", "postprocess.rerank=false", "data.alpha=gray",
                                    "data.random_resized_crop_scale=[0.3, 1.0]", "optimizer.lr=1e-3"])
    assert cfg.train.epochs == 3 and cfg.postprocess.rerank is False and cfg.data.alpha == "gray"
    assert cfg.data.random_resized_crop_scale == (0.3, 1.0) and cfg.optimizer.lr == 1e-3


@pytest.mark.parametrize("override, message", [
    ("train.epochs=many", "--set train.epochs: Input should be a valid integer, unable to parse string as an integer"),
    ("train.epoch=3", "--set: unknown key train.epoch; did you mean train.epochs? "
                      "(`jaguar-reid config show` lists every key)"),
    ("trian.epochs=3", "--set: unknown key trian; did you mean train? (`jaguar-reid config show` lists every key)"),
    ("data.alpha=purple", "--set data.alpha: Input should be 'keep', 'black', 'gray', 'white' or 'noise'"),
    ("noequals", "override 'noequals': expected section.key=value, e.g. train.epochs=3"),
])
def test_bad_overrides(override, message):
    with pytest.raises(ConfigError) as error:
        load_config("lite0-cpu", [override])
    assert str(error.value) == message


def test_toml_file_round_trip(tmp_path):
    cfg = load_config("resnet50-baseline", ["train.epochs=2"])
    path = tmp_path / "mine.toml"
    path.write_text(cfg.to_toml())
    assert load_config(str(path)) == cfg


def test_unknown_config():
    with pytest.raises(ConfigError, match="unknown config 'nope': not a file, and not a preset"):
        load_config("nope")
    assert Config().train.epochs == 10


def test_unknown_key_in_a_preset_file_names_the_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text("[train]\nepohcs = 3\n")
    with pytest.raises(ConfigError, match=r"mine.toml: unknown key train.epohcs; did you mean train.epochs\?"):
        load_config(str(path))


def test_with_overrides_takes_typed_values_unparsed():
    cfg = load_config("lite0-cpu").with_overrides({"split.group_column": "2024", "train.epochs": 2})
    assert cfg.split.group_column == "2024" and cfg.train.epochs == 2  # "2024" stays a string
    assert load_config("lite0-cpu").with_overrides(["train.epochs=2"]).train.epochs == 2


def test_config_show_round_trips_with_a_comment_per_key():
    import tomllib

    from jaguar_reid.config import build_config, describe_config

    for name in preset_names():
        text = describe_config(load_config(name))
        assert build_config(tomllib.loads(text)) == load_config(name)
        keys = [line for line in text.splitlines() if "=" in line and not line.startswith(("#", "name"))]
        assert all("# " in line for line in keys), [line for line in keys if "# " not in line]


def test_where_a_run_executes_does_not_make_it_another_run():
    cfg = load_config("lite0-cpu")
    assert cfg.same_run_as(cfg.with_overrides({"train.device": "cpu", "data.num_workers": 4, "train.eval_batch_size": 8,
                                               "postprocess.rerank": False, "train.channels_last": False}))
    assert not cfg.same_run_as(cfg.with_overrides({"train.epochs": 3}))
    assert not cfg.same_run_as(cfg.with_overrides({"finetune.keep_epoch": "best"}))  # what is kept is what is learnt
