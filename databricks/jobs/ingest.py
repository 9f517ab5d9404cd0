"""The bundle's ingest task: Kafka → bronze and rejects (vhlake.spark.streams), as a continuous stream.

Kafka settings that are secrets (a SASL JAAS line, say) are read from a Databricks secret scope:
``--secret-option kafka.sasl.jaas.config=vhlake/kafka-jaas`` passes the secret ``kafka-jaas`` of the scope
``vhlake`` as that reader option; plain options go with ``--kafka-option key=value``. Messages in the
Confluent wire format are unframed; with ``--schema-registry-url`` their schema ids are checked there
(``--schema-registry-user`` and ``--schema-registry-secret SCOPE/NAME`` for its basic auth).
"""

from __future__ import annotations

import argparse

from pydantic import SecretStr
from pyspark.sql import SparkSession

from vhlake.events.registry_client import RegistryConfig
from vhlake.spark.streams import kafka_records, records_to_bronze_stream
from vhlake.spark.tables import DeltaTables


def _pairs(values: list[str]) -> dict[str, str]:
    return dict(value.split("=", 1) for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--catalog", default="validahub")
    parser.add_argument("--schema", default="analytics")
    parser.add_argument("--bootstrap-servers", required=True)
    parser.add_argument("--topic", default="validation-events")
    parser.add_argument("--starting-offsets", default="earliest", help="earliest, latest or Spark's JSON")
    parser.add_argument("--max-offsets-per-trigger", type=int, default=500_000)
    parser.add_argument("--kafka-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--secret-option", action="append", default=[], metavar="KEY=SCOPE/NAME")
    parser.add_argument("--source-system", default="kafka")
    parser.add_argument("--available-now", action="store_true", help="read what is there, then stop")
    parser.add_argument("--schema-registry-url", help="check framed messages' schema ids in this registry")
    parser.add_argument("--schema-registry-user")
    parser.add_argument("--schema-registry-secret", metavar="SCOPE/NAME", help="the registry's password")
    args = parser.parse_args()

    spark = SparkSession.builder.getOrCreate()
    options = _pairs(args.kafka_option)
    if args.secret_option:
        from pyspark.dbutils import DBUtils  # Databricks runtime only

        secrets = DBUtils(spark).secrets
        for key, where in _pairs(args.secret_option).items():
            scope, name = where.split("/", 1)
            options[key] = secrets.get(scope=scope, key=name)
    registry = None
    if args.schema_registry_url:
        password = None
        if args.schema_registry_secret:
            from pyspark.dbutils import DBUtils  # Databricks runtime only

            scope, name = args.schema_registry_secret.split("/", 1)
            password = SecretStr(DBUtils(spark).secrets.get(scope=scope, key=name))
        registry = RegistryConfig(args.schema_registry_url, args.schema_registry_user, password)
    records = kafka_records(
        spark,
        bootstrap_servers=args.bootstrap_servers,
        topic=args.topic,
        starting_offsets=args.starting_offsets,
        max_offsets_per_trigger=args.max_offsets_per_trigger,
        options=options,
    )
    query = records_to_bronze_stream(
        records,
        DeltaTables(spark, catalog=args.catalog, schema=args.schema),
        checkpoint=f"/Volumes/{args.catalog}/{args.schema}/checkpoints/kafka_to_bronze",
        source_system=args.source_system,
        app_id=f"kafka_to_bronze:{args.topic}",
        available_now=args.available_now,
        registry=registry,
    )
    query.awaitTermination()


if __name__ == "__main__":
    main()
