"""Flex Template entry point (FLEX_TEMPLATE_PYTHON_PY_FILE): the same CLI as everywhere.

The launcher calls ``python main.py --input=... --output=... --runner=DataflowRunner ...``
with the template's parameters. It sits with the other deployment files; the package it
imports is installed in the image.""" 

from pipeline.run import main

if __name__ == "__main__":
    main()
