"""shopml.rank: a click-through ranking model over jagged behaviour histories.

Modules: ``config`` (RankConfig), ``tables`` (input schemas and reader), ``vocab`` (id maps),
``batch`` (batch containers), ``data`` (examples, vectorised KeyedJaggedTensor batches),
``loader``, ``model`` (RankingModel: jagged / padded / pooling sequence backends), ``buckets`` and
``graphs`` (the CUDA-graph fast step), ``train`` (AdamW, bf16, checkpoints, torchrun DDP),
``evaluate`` (AUC, logloss, normalized entropy, batch prediction), ``cli`` (the entry point).
"""
