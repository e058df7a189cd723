"""YAML read with limits: every YAML lp_prune reads (configs, sweep files, a run's config.yaml) goes here.

`yaml.safe_load` already refuses `!!python` tags, but not a document that is small on disk and huge
once read: nine levels of aliases ("billion laughs") fit in a few hundred bytes and expand to 10^9
nodes when anything walks the result (jsonargparse copies it). Here the composed node graph is
measured before any Python object is built, counting every alias as the full subtree it stands for;
a document over MAX_NODES, a text over MAX_BYTES, or a mapping that names a key twice (plain YAML
keeps the last silently) is a ConfigError naming where it came from. Nesting deeper than MAX_DEPTH
is refused from the parser's events, before the recursive composer runs, and an alias that refers to
a node containing it (a cycle) is refused when the graph is measured.
"""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import yaml

from lp_prune.errors import ConfigError

MAX_BYTES = 1 << 20  # a config or sweep file is a few kB; the largest shipped one is under 10 kB
MAX_NODES = 100_000  # scalars, lists and mappings after alias expansion
MAX_DEPTH = 64  # lists and mappings inside each other; a config is about 4 deep


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


class _AliasCycleError(Exception):
    pass


def expanded_size(node: yaml.Node, limit: int = MAX_NODES) -> int:
    """Number of nodes in the document once every alias is replaced by what it names (stops past limit).

    Raises YamlLimitError for nesting deeper than MAX_DEPTH once aliases are expanded, and
    _AliasCycleError for an alias inside the node it names.
    """
    sizes: dict[int, tuple[int, int]] = {}  # node id -> (expanded size, expanded height)
    open_nodes: set[int] = set()

    def measure(current: yaml.Node, depth: int) -> tuple[int, int]:
        if id(current) in sizes:  # an alias: the same node object again, counted in full each time
            total, height = sizes[id(current)]
            if depth + height > MAX_DEPTH:
                raise YamlLimitError(f"nests lists and mappings more than {MAX_DEPTH} deep")
            return total, height
        if id(current) in open_nodes:
            raise _AliasCycleError
        if isinstance(current, yaml.SequenceNode):
            children = current.value
        elif isinstance(current, yaml.MappingNode):
            children = [part for pair in current.value for part in pair]
        else:
            children = []
        if children and depth >= MAX_DEPTH:
            raise YamlLimitError(f"nests lists and mappings more than {MAX_DEPTH} deep")
        open_nodes.add(id(current))
        total, height = 1, 0
        for child in children:
            size, child_height = measure(child, depth + 1)
            total, height = total + size, max(height, child_height + 1)
            if total > limit:
                break
        open_nodes.discard(id(current))
        sizes[id(current)] = (total, height)
        return total, height

    return measure(node, 0)[0]


def check_depth(text: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH from the parser's events (the parser keeps a stack of its
    own; composing and constructing recurse once per level). Text that does not parse is left to the
    full load, which says what is wrong with it."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise YamlLimitError(f"nests lists and mappings more than {MAX_DEPTH} deep")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return


def load_yaml_text(text: str, source: str = "YAML") -> Any:
    """Parse one YAML document with the limits above; `source` names it in the error."""
    if len(text) > MAX_BYTES:
        raise YamlLimitError(f"{source}: {len(text):,} characters; YAML input is limited to {MAX_BYTES:,}")
    try:
        check_depth(text)
    except YamlLimitError as err:
        raise YamlLimitError(f"{source}: {err}; refused") from None
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node) > MAX_NODES:
            raise YamlLimitError(f"expands to more than {MAX_NODES:,} values (YAML aliases)")
        return loader.construct_document(node)
    except YamlLimitError as err:
        raise YamlLimitError(f"{source}: {err}; refused") from None
    except _AliasCycleError:
        cycle = "an alias refers to a list or mapping that holds it (a cycle)"
        raise YamlLimitError(f"{source}: {cycle}; refused") from None
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
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # reading a FIFO or a device would wait or never end
            raise ConfigError(f"{path} is not a regular file (a folder, FIFO or device); expected YAML")
        size = info.st_size
        if size > MAX_BYTES:
            raise ConfigError(f"{path}: {size:,} bytes; a YAML file is limited to {MAX_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (not UTF-8); expected YAML") from None
    except OSError as err:
        raise ConfigError(f"cannot read {path}: {err.strerror or err}") from None
    return load_yaml_text(text, str(path))
