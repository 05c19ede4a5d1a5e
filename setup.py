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
    packages=find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*", "schemas",
                                    "schemas.*", "models", "models.*"]),
    install_requires=[
        "apache-beam>=2.77,<3",
        "tensorflow>=2.21,<2.22",
        "tf-keras>=2.21,<2.22",
        "pyarrow>=14,<26",
        "numpy>=1.26",
        # Pillow's release notes (docs/releasenotes in its repository), advisories against
        # what this pipeline opens or calls:
        #   10.0.1  CVE-2023-4863   WebP heap buffer overflow (bundled libwebp 1.3.2);
        #   12.1.1  CVE-2026-25990  OOB write from invalid tile extents, in the tile decoder
        #   12.2.0  CVE-2026-42311    every format uses (reported with PSD; 12.2.0 fixed the
        #                             integer overflow left in 12.1.1's check);
        #   12.3.0  CVE-2026-59199  OOB write in Image.crop/paste/alpha_composite (decode
        #                             composites images with alpha).
        # None of 12.3.0's other advisories (PDF, EPS, JPEG 2000, McIdas, TGA saving, fonts)
        # concerns an allowed format. 12.3.0 is the first release with none of these open.
        "pillow>=12.3.0",
        # WebDataset's brace notation in --input (shard-{000000..000099}.tar), as it expands it.
        "braceexpand>=0.1.7",
        # libjpeg-turbo straight into numpy, for JPEGs (transforms/turbojpeg.py); 1.9.0
        # bundles libjpeg-turbo 3.1.2 (the release measured in BENCHMARKS.md).
        "simplejpeg>=1.9.0",
    ],
    extras_require={
        # The viridis colour map of `resnet50-inspect featuremaps`; never needed by workers.
        "featuremaps": ["matplotlib>=3.7"],
        # resnet50-inspect index | duplicates | report: FAISS on the machine that inspects.
        "index": ["faiss-cpu>=1.8"],
        "gcp": ["apache-beam[gcp]>=2.77,<3"],
        "gpu": ["tensorflow[and-cuda]>=2.21,<2.22"],
        # The suite builds Dataflow jobs offline (gcp) and the sdist/wheel (build).
        # webdataset: tests write shards with its TarWriter, as users do.
        # pytest-xdist: the full suite runs on every core (run_tests.sh -n).
        "test": ["pytest>=8", "pytest-xdist>=3.5", "faiss-cpu>=1.8", "duckdb>=1.0", "pandas>=2", "build>=1.0",
                 "matplotlib>=3.7", "apache-beam[gcp]>=2.77,<3", "webdataset>=0.2"],
        # tensorflow-hub: Beam's TF model handler imports it (bench/beam_documented.py);
        "bench": ["tensorflow-hub==0.16.1"],
    },
    entry_points={"console_scripts": ["resnet50-embed=pipeline.run:main",
                                      "resnet50-inspect=pipeline.inspection.cli:console_main",
                                      "resnet50-device=pipeline.devicecheck.cli:main"]},
)
