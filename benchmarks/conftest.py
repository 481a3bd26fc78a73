import torch

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def pytest_addoption(parser):
    parser.addoption("--quick", action="store_true", default=False,
                     help="run every benchmark case at its small size (about a minute in all)")
