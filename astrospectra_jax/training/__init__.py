"""Deep training: ``train.train_and_evaluate(config, workdir)`` and the parts it is built from.

- ``train``: config checks, the loop, evaluation, results;
- ``steps``: the optimizer, the initial state and the jitted training and evaluation steps;
- ``sharding``: the device mesh and how arrays lie on it;
- ``input_pipeline``: device-resident splits (shuffle, augmentation, resize on device) or tf.data;
- ``checkpointing``: Orbax save and restore;
- ``metrics``: metric logs, the classification report, the confusion-matrix figure.
"""
