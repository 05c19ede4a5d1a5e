"""Flex Template entry point (FLEX_TEMPLATE_PYTHON_PY_FILE): the same CLI as everywhere.

The launcher calls ``python main.py --input=... --output=... --runner=DataflowRunner ...``
with the template's parameters. It lives outside the ``pipeline`` package because running a
file inside it as a script would put ``pipeline/`` first on sys.path, where our
``inspect.py`` would shadow the standard library's."""

from pipeline.run import main

if __name__ == "__main__":
    main()
