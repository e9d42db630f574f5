"""Checkpoint folders that hold only some sub-models (the benchmark geometries), written and read back."""
import json
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file


def save_partial_checkpoint(directory, config_dict, tensors):
    """config.json + one model.safetensors holding `tensors` (no language-model weights needed)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config_dict, indent=2, sort_keys=True) + "\n")
    save_file(dict(sorted(tensors.items())), str(directory / "model.safetensors"), metadata={"format": "pt"})


def load_prefixed(directory, *prefixes):
    """For each prefix, the float32 tensors under it (prefix stripped), from a single or sharded checkpoint."""
    directory = Path(directory)
    index = directory / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
    out = [{} for _ in prefixes]
    for f in files:
        with safe_open(str(directory / f), framework="pt") as sf:
            for name in sf.keys():
                for i, p in enumerate(prefixes):
                    if name.startswith(p):
                        out[i][name[len(p):]] = sf.get_tensor(name).float()
    return out
