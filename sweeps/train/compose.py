"""Hydra composition of the primary configs (conf/<name>.yaml) with command-line overrides."""
from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from components.models import conf_dir
from components.options import ComponentError


def compose(config_name: str, overrides: list[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """-> (the resolved config as a dict, the chosen option of each config group, e.g. {'model': 'titans'})."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # Dotted keys are forced in (++): presets omit defaulted keys (sizes, options), and our own validation of
    # the composed config names an unknown key with its closest valid one, which Hydra's struct check does not.
    overrides = [o if o[0] in "+~" or "=" not in o or "." not in o.split("=", 1)[0] else "++" + o for o in overrides]
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = hydra_compose(config_name, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        raise ComponentError(f"{' '.join(overrides) or config_name}: {err}") from None
    choices = {k: v for k, v in cfg.hydra.runtime.choices.items() if not k.startswith("hydra")}
    data = OmegaConf.to_container(cfg, resolve=False)
    data.pop("hydra")
    return OmegaConf.to_container(OmegaConf.create(data), resolve=True), choices
