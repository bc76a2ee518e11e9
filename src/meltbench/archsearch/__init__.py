"""Architecture search before pre-training: latency-optimal decoder shapes per device.

PhoneLM's principle (Yi et al. 2024, arXiv:2411.05046): choose the architecture for
runtime efficiency on the target device before spending compute on training. Shapes of a
search space (:mod:`.space`) are counted exactly (:mod:`.params`), written as
random-weight GGUFs and transformers configs (:mod:`.materialize`), measured with the
sweep machinery on each target, fitted with a per-device latency model
(:mod:`.latency_model`), and reduced to their latency-vs-parameters Pareto front
(:mod:`.pareto`); :mod:`.search` runs the strategies and :mod:`.command` the CLI.
"""
