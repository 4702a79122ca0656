"""sslkit: two-tower retrieval with self-supervised feature masking for tabular data.

The package root imports nothing heavy (no torch, no hnswlib, no polars) so that
`sslkit --help` stays instant; the library functions live in their modules:

* `sslkit.config.load_config`  — YAML schema → validated `Config`
* `sslkit.store.load_store`    — Polars preprocessing → cached, memory-mapped `FeatureStore`
* `sslkit.profile.profile`     — dataset statistics
* `sslkit.mi.mutual_information` — pairwise MI between item features (drives CFM)
"""

__version__ = "0.1.0"
