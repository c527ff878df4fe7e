"""Counting how often a method's step is traced: the trainers promise one compiled step for
every regulariser interval, progressive stage and curriculum phase (the step reads them from
its traced step counter), so crossing those boundaries must not trace it again."""

import dataclasses


def counting_traces(task):
    """(a copy of `task` whose train_step appends to `traces` each time it is traced,
    `traces`). Under jit the Python function runs once per trace, never per step."""
    traces = []

    def train_step(*args):
        traces.append(len(traces))
        return task.train_step(*args)

    return dataclasses.replace(task, train_step=train_step), traces
