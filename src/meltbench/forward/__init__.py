"""Single-pass tasks beside text generation: encoders (``encode``) and vision models
(``classify``), measured one forward pass at a time.

A forward task feeds a batch of synthetic, seeded inputs (token ids for a BERT-style
encoder, images for a vision model) through the same weights on every engine and times
each pass. What lives here so far is the engine-independent part: the architectures that
build without a download (:mod:`~meltbench.forward.presets`), the inputs
(:mod:`~meltbench.forward.inputs`) and the check that two engines' outputs agree
(:mod:`~meltbench.forward.outputs`). The engines and ``meltbench run --task`` build on
them (issue 17, in progress).
"""
