"""The configuration as users meet it: every key described in --help, every choice listed and checked."""

import dataclasses
from typing import Literal, get_args, get_origin, get_type_hints

import pytest

from lp_prune.cli import build_parser, main
from lp_prune.config import RunConfig
from lp_prune.config.method_keys import method_settings
from lp_prune.pruning import PruningMethod


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, object]]:
    """(dotted key, type) of every non-dataclass field of a config dataclass, nested ones included."""
    hints = get_type_hints(cls)
    leaves = []
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind) and not issubclass(kind, PruningMethod):  # a method: prune.method
            leaves += leaf_fields(kind, f"{prefix}{field.name}.")
        else:
            leaves.append((f"{prefix}{field.name}", kind))
    return leaves


def test_every_key_has_a_description_and_every_choice_its_values():
    run = build_parser()._subcommands_action._name_parser_map["run"]
    actions = {action.dest: action for action in run._actions}
    leaves = leaf_fields(RunConfig) + [(f"prune.{key}", s.kind) for key, s in method_settings().items()]
    assert len(leaves) > 50 and ("prune.method", PruningMethod) in leaves and ("prune.bits", int) in leaves
    for key, kind in leaves:
        action = actions[key]
        assert action.help and not action.help.startswith(("Path to a configuration file", "(type")), key
        if key.startswith("prune.") and key[6:] in method_settings():  # a method's own setting: which methods
            assert "a setting of" in action.help, key
        if get_origin(kind) is Literal:
            assert action.metavar == "{" + ",".join(get_args(kind)) + "}", key  # what --help shows


def test_help_lists_choices_and_a_bad_choice_gets_them_in_one_line(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    assert "--prune.method METHOD" in text and "sparsegpt (second-order" in text
    assert "Pruning method: sparsegpt" in text
    assert main(["run", "--activations", "gpu"]) == 2
    assert capsys.readouterr().err.strip() == "lp-prune: error: activations 'gpu' is not one of: device, cpu, disk"
