"""Process handling of a measurement: the worker process that runs the model, the host-side
runner that starts and watches it, the measurement around it (sensors, memory, bandwidth)
and the agent that runs a measurement on a remote device. The pure analysis of what they
record lives in :mod:`meltbench.measure`."""
