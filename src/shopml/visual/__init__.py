"""VisNet visual search and visual recommendations (Flipkart, arXiv 1703.02344).

Modules: ``config`` (frozen dataclasses), ``models`` (VisNet and its trunks), ``images`` (loading and
preprocessing), ``losses`` / ``mining`` (triplet loss, miners, samplers), ``data`` (training sets from
a world directory), ``train``, ``evaluate`` (Street2Shop protocol), ``index`` (VectorIndex: FAISS,
Milvus), ``recommend`` (precomputed visual recommendations). Heavy imports (faiss, pymilvus,
pytorch-metric-learning, torchvision) happen inside the functions that need them.
"""
