"""Packaging: ``pip install .`` gives the pipeline, its transforms, schemas and models.
Dataflow workers install it from ``--setup_file ./setup.py``."""

from setuptools import find_packages, setup

setup(
    name="resnet50-embeddings",
    version="0.1.0",
    description="Batch image feature extraction: multi-layer ResNet50 embeddings to Parquet with Apache Beam",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["pipeline", "transforms", "schemas", "models"]),
    install_requires=[
        "apache-beam>=2.77,<3",
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "pyarrow>=14,<26",
        "numpy>=1.26",
        "pillow>=10",
        "matplotlib>=3.7",  # the viridis colour map of pipeline.inspect featuremaps
    ],
    extras_require={
        "gcp": ["apache-beam[gcp]>=2.77,<3"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        # The suite builds Dataflow jobs offline (gcp) and the sdist/wheel (build).
        # webdataset: tests write shards with its TarWriter, as users do.
        "test": ["pytest>=8", "duckdb>=1.0", "pandas>=2", "build>=1.0",
                 "apache-beam[gcp]>=2.77,<3", "webdataset>=0.2"],
        "bench": ["tensorflow-hub==0.16.1"],
    },
    entry_points={"console_scripts": ["resnet50-embed=pipeline.run:main"]},
)
