"""The build step pyproject.toml cannot say: the top-level configs/ and sweeps/ go into the wheel as
lp_prune/config_hub/configs and lp_prune/config_hub/sweeps, where lp_prune.config.hub finds them after
a non-editable install. An editable install (and PYTHONPATH=src) reads them where they are."""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
HUB_FOLDERS = ("configs", "sweeps")
PACKAGED_AS = Path("lp_prune", "config_hub")


def hub_files() -> list[Path]:
    """Every file under configs/ and sweeps/, relative to the repository."""
    return sorted(
        path.relative_to(ROOT) for folder in HUB_FOLDERS for path in (ROOT / folder).rglob("*") if path.is_file()
    )


class BuildPyWithHub(build_py):
    """build_py, plus configs/ and sweeps/ copied into the built package."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for name in hub_files():
            target = Path(self.build_lib, PACKAGED_AS, name)
            self.mkpath(str(target.parent))
            self.copy_file(str(ROOT / name), str(target))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if self.editable_mode:
            return outputs
        return [*outputs, *(str(Path(self.build_lib, PACKAGED_AS, name)) for name in hub_files())]


if __name__ == "__main__":
    setup(cmdclass={"build_py": BuildPyWithHub})
