"""Model construction: ResNet50 with its weights, and the multi-layer extractor."""
