"""Runs pipelines/twilio_studio_airflow_dag.py with Airflow's ``dag.test()`` in a process of its own.

Airflow reads its configuration once, at import. Prints the run's state and each task's as JSON.

    AIRFLOW_HOME=... TWILIO_STUDIO_ACCOUNTS=AC1,AC2 SOURCES__TWILIO_STUDIO__...=... python airflow_child.py
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    """Runs the DAG once; prints the result as JSON; 0 if it ran."""
    home = Path(os.environ["AIRFLOW_HOME"])
    dags = home / "dags"
    dags.mkdir(parents=True, exist_ok=True)
    (dags / "twilio_studio_airflow_dag.py").symlink_to(REPO / "pipelines" / "twilio_studio_airflow_dag.py")
    os.environ.update({
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "TWILIO_STUDIO_DAG_WIPE_LOCAL_DATA": "0",  # dag.test(): every task in this one process
    })  # fmt: skip
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.initdb()
    bag = DagBag(str(dags))
    if bag.import_errors:
        print(json.dumps({"import_errors": {k: str(v) for k, v in bag.import_errors.items()}}))
        return 1
    dag = bag.get_dag("twilio_studio")
    run = dag.test()
    tasks = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print(json.dumps({"state": str(run.state), "tasks": tasks}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
