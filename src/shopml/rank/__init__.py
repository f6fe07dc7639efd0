"""shopml.rank: a click-through ranking model over jagged behaviour histories.

Modules: ``config`` (RankConfig), ``data`` (examples, vectorised KeyedJaggedTensor batches),
``model`` (RankingModel: jagged / padded / pooling sequence backends), ``train`` (AdamW, bf16,
checkpoints, torchrun DDP), ``evaluate`` (AUC, logloss, normalized entropy), ``cli``.
"""
