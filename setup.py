from setuptools import find_packages, setup

# The user's client (client/, the `blockdrive` command): HTTP with requests, blocks cut with
# pyfastcdc exactly as the server cuts them, progress bars with tqdm. It is all a plain
# `pip install blockdrive` needs; the server is the `server` extra.
CLIENT = ["requests>=2.31", "pyfastcdc>=0.3,<0.4", "tqdm>=4.66", "watchdog>=4"]
CORE = [
    "pyfastcdc>=0.3,<0.4",
    "zstandard>=0.22",
    "crc32c>=2.4",
    "pyarrow>=15",
    "fsspec>=2024.2",
    "SQLAlchemy>=2.0,<2.1",
    "alembic>=1.13",
    "PyMySQL>=1.1",
    "tqdm>=4.66",
]
# WebDAV (webapi/dav): WsgiDAV, the engine under Seafile's seafdav, with our provider over storage;
# pinned to the minor version the provider and its answers' fixes (webapi/dav/app.py) are tested with.
# Pillow: the web app's image thumbnails, made in a separate process with size and pixel limits.
WEB = ["Flask>=3.0,<4", "gunicorn>=22", "prometheus_client>=0.20", "pydantic>=2.7,<3", "WsgiDAV>=4.3.3,<4.4",
       "Pillow>=10.3"]
SERVER = CORE + WEB
HDFS = ["hdfs>=2.7", "hdfs-native>=0.10"]
S3 = ["boto3>=1.34"]
# The maintenance jobs (jobs/): PySpark (bundles the Hadoop 3.5.0 client) and the scheduler,
# APScheduler pinned to its 3.x API.
JOBS = ["pyspark==4.3.0", "APScheduler>=3.10,<4", "pandas>=2.2,<3"]
TEST = [
    "pytest>=8",
    "pytest-timeout>=2.3",
    "pytest-xdist>=3.5",  # make test runs unit, integration and e2e on one process per core
    "moto[server]>=5.0",
    "ruff>=0.5",  # make lint
    "mypy>=1.10",  # make lint
    "requests>=2.31",
    "tuspy>=1.0",
    "schemathesis>=3.30",
    "websocket-client>=1.7",  # drives headless Chromium over DevTools in the dashboard's e2e test
    "selenium>=4.20",  # drives Chromium (chromium-driver) through the web app in tests/e2e/test_web_*.py
    "hypothesis>=6.100",  # the model-based test of the drive (tests/reliability)
    "locust>=2.20",  # load and soak against the real server (tests/reliability)
]
# bench/: the chart next to the table of figures.
BENCH = ["matplotlib>=3.8"]

setup(
    name="blockdrive",
    version="0.1.0",
    description="A self-hostable file drive on a deduplicating, HDFS-backed block store",
    python_requires=">=3.11",
    packages=find_packages(include=["storage", "storage.*", "jobs", "jobs.*", "webapi", "webapi.*",
                                    "client", "client.*"]),
    package_data={"storage": ["migrations/script.py.mako"]},
    include_package_data=True,
    install_requires=CLIENT,
    extras_require={
        "client": CLIENT,
        "server": SERVER,
        "hdfs": HDFS,
        "s3": S3,
        "test": TEST,
        "jobs": JOBS,
        "bench": BENCH,
        "all": SERVER + HDFS + S3 + JOBS + TEST + BENCH,
    },
    entry_points={
        "console_scripts": ["blockdrive = client.main:main"],
        # the operator commands, offered by `blockdrive` when the server extra is installed
        "blockdrive.commands": [
            "server = webapi.cli:register_cli [server]",
            "jobs = jobs.cli:register_cli [server]",
            "report = jobs.report_cli:register_cli [server]",
        ],
    },
)
