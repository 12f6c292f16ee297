"""mirasweep's shipped configs (Hydra primary configs and groups); installed as the package mirasweep_conf."""
