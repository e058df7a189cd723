"""YAML read with limits: every YAML lp_prune reads (configs, sweep files, a run's config.yaml) goes here.

`yaml.safe_load` already refuses `!!python` tags, but not a document that is small on disk and huge
once read: nine levels of aliases ("billion laughs") fit in a few hundred bytes and expand to 10^9
nodes when anything walks the result (jsonargparse copies it). Here the composed node graph is
measured before any Python object is built, counting every alias as the full subtree it stands for;
a document over MAX_NODES, a text over MAX_BYTES, or a mapping that names a key twice (plain YAML
keeps the last silently) is a ConfigError naming where it came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from lp_prune.errors import ConfigError

MAX_BYTES = 1 << 20  # a config or sweep file is a few kB; the largest shipped one is under 10 kB
MAX_NODES = 100_000  # scalars, lists and mappings after alias expansion


class YamlLimitError(ConfigError):
    """The text breaks a limit (size, expansion, a key named twice): refused whoever reads it."""


class _DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys; expansion is measured on the node graph first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:  # the mapping's own keys; what a merge key (<<) brings may be overridden
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                line = key_node.start_mark.line + 1
                raise _DuplicateKeyError(None, None, f"key '{key_node.value}' appears twice (line {line})")
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def expanded_size(node: yaml.Node, limit: int = MAX_NODES) -> int:
    """Number of nodes in the document once every alias is replaced by what it names (stops past limit)."""
    sizes: dict[int, int] = {}

    def size(current: yaml.Node) -> int:
        if id(current) in sizes:  # an alias: the same node object again, counted in full each time
            return sizes[id(current)]
        total = 1
        if isinstance(current, yaml.SequenceNode):
            children = current.value
        elif isinstance(current, yaml.MappingNode):
            children = [part for pair in current.value for part in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                break
        sizes[id(current)] = total
        return total

    return size(node)


def load_yaml_text(text: str, source: str = "YAML") -> Any:
    """Parse one YAML document with the limits above; `source` names it in the error."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"{source}: {len(text):,} characters; YAML input is limited to {MAX_BYTES:,}")
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_NODES:
            raise YamlLimitError(f"{source}: expands to more than {MAX_NODES:,} values (YAML aliases); refused")
        return loader.construct_document(node)
    except _DuplicateKeyError as err:
        raise YamlLimitError(f"{source}: {err.problem}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(err).split())}") from None
    finally:
        loader.dispose()


def install_in_jsonargparse() -> None:
    """Make jsonargparse (--config files and every command-line value) read YAML within these limits.

    jsonargparse's own loader keeps its conventions (a value such as 'en:' stays a string); a text
    that breaks a limit is refused first. Text that is not valid YAML is left to jsonargparse, which
    treats a bad value as a plain string or reports it as it always has.
    """
    from jsonargparse import set_loader
    from jsonargparse._loaders_dumpers import yaml_load

    def bounded_yaml_load(stream: str) -> Any:
        try:
            load_yaml_text(stream, "YAML input")
        except YamlLimitError:
            raise
        except ConfigError:
            pass  # not valid YAML: jsonargparse's loader decides, as it always has
        return yaml_load(stream)

    set_loader("yaml", bounded_yaml_load, exceptions=(yaml.YAMLError,))


def load_yaml_file(path: str | Path) -> Any:
    """A YAML file read with the limits above; unreadable, binary or oversized files are a ConfigError."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes; a YAML file is limited to {MAX_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8); expected YAML") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    return load_yaml_text(text, str(path))
