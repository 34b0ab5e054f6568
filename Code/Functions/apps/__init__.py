"""Applications built on the engine: model comparison and the benchmark."""
