"""Data: from raw files to integer tensors, once.

Takes a validated `Config` (the YAML schema) and the files it names; gives a `FeatureStore`
(`store.load_or_build`): per entity an int32 feature matrix, the train / validation / test pair
splits, the vocabularies, cached on disk and memory-mapped. Also the dataset statistics every
report shares (`profile`), the features' mutual information (`mi`, drives CFM) and the schema
proposal for a new log (`infer`). Nothing here imports torch.
"""
