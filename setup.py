"""shmchannels: Django Channels 1.x on one host, over a POSIX shared-memory channel layer."""
from setuptools import Extension, find_packages, setup

setup(
    name="shmchannels",
    version="0.1.0",
    description="Django Channels 1.x rebuilt for single-host production with no broker",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["shmlayer*", "interface*", "worker*", "supervisor*", "channels*"]),
    include_package_data=True,
    package_data={"shmlayer": ["py.typed", "_fastpath.pyi"], "interface": ["py.typed"]},
    install_requires=[
        "django>=5.2,<6",
        "gunicorn>=23,<28",
        "posix-ipc>=1.1",
        "wsproto>=1.2,<2",  # interface/_frames.py checks the PerMessageDeflate internals it uses at import
        "h11>=0.14",
        "setproctitle>=1.3",
        # msgpack keeps bytes and str apart at any depth (asgi1.md §3), as asgi_redis did.
        "msgpack>=1.0",
        # redis-py for the multi-host layer (issue 6).
        "redis>=5",
    ],
    extras_require={
        # Encryption at rest of Redis message bodies (symmetric_encryption_keys): Fernet.
        "encryption": ["cryptography>=42"],
        # `make bench`: the interface benchmark's peer.
        "bench": ["uvicorn>=0.30"],
        "test": [
            "cryptography>=42",
            "pytest>=8",
            "pytest-timeout>=2.3",
            "hypothesis>=6.100",
            "websockets>=13",
            "selenium>=4.20",
            "mypy>=1.10",
        ],
    },
    # The segment lock (a robust process-shared pthread mutex) and the common case of
    # send/receive: the Python path costs ~7 µs per operation, this one ~1 µs.
    ext_modules=[Extension(
        "shmlayer._fastpath",
        ["shmlayer/_fastpath.c", "shmlayer/_fastpath_lock.c", "shmlayer/_fastpath_queues.c",
         "shmlayer/_fastpath_heap.c", "shmlayer/_fastpath_ops.c", "shmlayer/_fastpath_plain.c"],
        depends=["shmlayer/_fastpath.h"],
    )],
    entry_points={
        "console_scripts": [
            "shmchannels = supervisor.cli:main",
            "shmchannels-interface = interface.cli:main",
        ],
    },
    classifiers=[
        "Framework :: Django",
        "Framework :: Django :: 5.2",
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
    ],
)
