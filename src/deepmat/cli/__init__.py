"""The ``deepmat`` command: train, predict, evaluate, recalibrate and combine models, explain,
screen, segment, measure, reconstruct and design microstructures, learn actively, list
models and datasets, generate data, index EBSD patterns, manage the cache and installed
weights, run the demo.

One module per group of commands: :mod:`~deepmat.cli.train`, :mod:`~deepmat.cli.use`,
:mod:`~deepmat.cli.reconstruct`, :mod:`~deepmat.cli.design` and :mod:`~deepmat.cli.data`,
with the options and printing they share in :mod:`~deepmat.cli.options`. Each command is a
thin shell over a workflow.
"""

import typer

from deepmat.cli import data, use
from deepmat.cli.design import design
from deepmat.cli.learn import learn
from deepmat.cli.reconstruct import reconstruct
from deepmat.cli.search import search_app
from deepmat.cli.structure_prediction import predict_structure
from deepmat.cli.train import train_app

app = typer.Typer(
    help="Deep materials informatics.", no_args_is_help=True, pretty_exceptions_enable=False
)
app.add_typer(train_app, name="train")
app.add_typer(search_app, name="search")
for command in (
    use.predict,
    predict_structure,
    use.evaluate,
    use.recalibrate,
    use.ensemble,
    use.pair,
    use.screen,
    use.segment,
    use.measure,
    reconstruct,
    design,
    learn,
    use.models,
    use.demo,
    data.datasets,
):
    app.command()(command)
app.add_typer(use.explain_app, name="explain")
app.add_typer(data.generate_app, name="generate")
app.add_typer(data.ebsd_app, name="ebsd")
app.add_typer(data.cache_app, name="cache")
app.add_typer(data.weights_app, name="weights")

__all__ = ["app"]
