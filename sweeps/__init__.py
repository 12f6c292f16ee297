"""Running things: tasks, training, Optuna studies, launchers, tracking, reports and the CLI."""
