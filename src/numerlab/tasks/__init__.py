"""Tasks: what a run does (`task=<name>`, conf/task/<name>.yaml).

Each task is one small module with `run(cfg, run_dir) -> metrics`, named by its config's
`_target_`; it composes the steps of `numerlab.pipeline` and never copies them. Adding a
task is one yaml file plus one module here.
"""
