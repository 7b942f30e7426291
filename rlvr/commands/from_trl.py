"""``rlvr from-trl CONFIG.yaml [FIELD=VALUE ...] [--out RECIPE] [--preset ppo]``: a TRL GRPO config as an
rlvr recipe (:func:`rlvr.from_trl.convert`, which states the mapping field by field)."""
from __future__ import annotations

from rlvr.from_trl import convert


def add_arguments(p) -> None:
    from pathlib import Path

    p.add_argument("config", type=Path, metavar="CONFIG.yaml",
                   help="a TRL GRPO config as `trl grpo --config` reads it (GRPOConfig fields, model_name_or_path, "
                        "dataset_name, reward_funcs, ...)")
    p.add_argument("overrides", nargs="*", metavar="FIELD=VALUE", help="GRPOConfig fields to set on top (YAML values)")
    p.add_argument("--out", "-o", type=Path, help="write the recipe here (default: print it)")
    p.add_argument("--preset", default="grpo", help="the rlvr preset to write the algorithm against (default grpo; "
                                                    "ppo keeps its critic and GAE)")
    p.add_argument("--reward-funcs", default=None,
                   help="comma-separated reward functions (rlvr specs trl:file.py:fn, TRL CLI names or dotted paths)")
    p.add_argument("--dataset-size", type=int, default=None, help="training rows, to turn num_train_epochs into steps")
    p.add_argument("--name", default=None, help="the recipe's name (default: the config file's stem)")


def run(args) -> int:
    import sys

    import yaml

    from rlvr.errors import ConfigError

    if not args.config.is_file():
        raise ConfigError(f"{args.config}: no such file")
    try:
        data = yaml.safe_load(args.config.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{args.config}: invalid YAML ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{args.config}: a TRL config is a mapping of GRPOConfig fields")
    for text in args.overrides:
        key, sep, raw = text.partition("=")
        if not sep:
            raise ConfigError(f"override {text!r} must look like field=value")
        data[key.strip()] = yaml.safe_load(raw)
    funcs = [x.strip() for x in args.reward_funcs.split(",") if x.strip()] if args.reward_funcs else None
    try:
        conv = convert(data, reward_funcs=funcs, preset=args.preset, dataset_size=args.dataset_size)
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None
    recipe = {"name": args.name or args.config.stem, **conv.recipe}
    text = yaml.safe_dump(recipe, sort_keys=False)
    header = "".join(f"# note: {line}\n" for line in conv.notes)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(f"# converted from {args.config} by rlvr from-trl\n{header}{text}")
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    for line in conv.notes:
        print(f"rlvr from-trl: note: {line}", file=sys.stderr)
    return 0
