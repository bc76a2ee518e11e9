"""``meltbench lab``: one experiment across many devices attached to many hosts, scheduled by
Ray (each device is a Ray custom resource ``device:<name>`` on the node it is attached to).

- :mod:`~meltbench.lab.config`: the lab file (devices, their targets, hosts and classes);
- :mod:`~meltbench.lab.plan`: (point, device) pairs from an experiment with a ``devices`` axis;
- :mod:`~meltbench.lab.task`: what runs on a node: one pair, through :mod:`meltbench.api`;
- :mod:`~meltbench.lab.cluster`: joining or starting Ray, device resources, the progress board;
- :mod:`~meltbench.lab.execute`: the driver: submit, store each result as it arrives, resume,
  node and device loss;
- :mod:`~meltbench.lab.command`: the command's live view and summary.
"""
