"""CIFAR-10 sources and readers: download, archives, image folders (no Kedro)."""
