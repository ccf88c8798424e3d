"""The training engine: configs, Lightning modules per task, data modules, metrics, callbacks; see ``engine``."""
