"""The storage class of the lake's objects, per store: list the objects under a prefix with their size and
tier, and move one object to a tier in place (same key, same bytes), so Delta's paths stay valid.

| tier | S3 | Azure Blob (access tier) | Google Cloud Storage |
|---|---|---|---|
| hot | STANDARD | Hot | STANDARD |
| warm | STANDARD_IA | Cool | NEARLINE |
| cold | GLACIER_IR | Cold | COLDLINE |

Every class here answers a read in milliseconds, so queries and time travel read moved files as before
(each read of a warm or cold object is billed a retrieval fee by the GB). Offline classes (S3 Glacier
Flexible Retrieval and Deep Archive, Azure Archive) would break reads: vhlake never moves objects there,
and leaves objects it finds there alone. A local disk has one tier: reported only, never moved.

The S3 implementation runs against moto's S3 server in the tests; the Azure and GCS ones are written
against their SDKs' documented calls (``BlobClient.set_standard_blob_tier``, ``Blob.update_storage_class``)
and are not tested here (no emulator of their tiers at hand). Each SDK is an extra, imported only when a
lake on that store is tiered: ``vhlake[s3]``, ``vhlake[azure]``, ``vhlake[gcs]``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import urlsplit

from vhlake.errors import ConfigError, LakeError

Tier = Literal["hot", "warm", "cold"]


@dataclass(frozen=True)
class StoredObject:
    """An object as the store lists it: key (relative to the listed prefix), size, and tier (None: a
    class vhlake does not manage, left alone)."""

    key: str
    size: int
    tier: Tier | None
    storage_class: str


class ObjectTiers(Protocol):
    """A store's storage classes, behind the three tiers."""

    provider: str  # s3 | azure | gcs | local
    moves: bool  # False: the store has one tier (reported only)
    max_object_bytes: int | None  # the largest object ``move`` can take (None: no limit)

    def storage_class(self, tier: Tier) -> str:
        """The store's name of ``tier``."""
        ...

    def list(self, uri: str) -> Iterator[StoredObject]:
        """Every object under ``uri`` (a folder of the lake), keys relative to it."""
        ...

    def move(self, uri: str, key: str, tier: Tier) -> None:
        """Put the object ``key`` under ``uri`` in ``tier``, in place."""
        ...


def _tier_of(storage_class: str, classes: Mapping[Tier, str], also_hot: frozenset[str]) -> Tier | None:
    for tier, name in classes.items():
        if storage_class.upper() == name.upper():
            return tier
    return "hot" if storage_class.upper() in also_hot else None


def _bucket_and_prefix(uri: str) -> tuple[str, str]:
    """``scheme://bucket/some/folder`` -> (bucket, ``some/folder/``); the prefix is empty at the root."""
    parts = urlsplit(uri)
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


def _option(options: Mapping[str, str], *names: str) -> str | None:
    lowered = {k.lower(): v for k, v in options.items()}
    return next((lowered[n] for n in names if lowered.get(n)), None)


class S3Tiers:
    """S3 (and S3-compatible stores that implement storage classes), through boto3: a LIST per thousand
    objects, and a server-side ``CopyObject`` onto the same key with the new class per move (the data is
    not downloaded; S3 allows such a copy up to 5 GB). On a versioned bucket the copy becomes the current
    version and the previous one stays, in its class, until a lifecycle rule expires noncurrent versions."""

    provider = "s3"
    moves = True
    max_object_bytes: int | None = 5 * 1024**3
    CLASSES: ClassVar[Mapping[Tier, str]] = {"hot": "STANDARD", "warm": "STANDARD_IA", "cold": "GLACIER_IR"}
    # Classes read and billed like STANDARD for our purpose (REDUCED_REDUNDANCY is a deprecated standard).
    _ALSO_HOT = frozenset({"REDUCED_REDUNDANCY"})

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def connect(cls, options: Mapping[str, str], *, endpoint: str | None = None) -> S3Tiers:
        """A boto3 client with the endpoint, credentials and region of the lake's storage options (the
        ones delta-rs gets), else ``endpoint``, else boto3's own chain (``AWS_*`` variables, profiles,
        instance roles), as delta-rs falls back to the environment."""
        try:
            import boto3
        except ImportError as exc:
            raise ConfigError(
                "moving an S3 lake's old partitions to cheaper storage classes needs boto3: "
                "pip install 'vhlake[s3]' (or turn tiering off with VHLAKE_TIERING=false)"
            ) from exc
        arguments = {
            "endpoint_url": _option(options, "aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint")
            or endpoint,
            "aws_access_key_id": _option(options, "aws_access_key_id", "access_key_id"),
            "aws_secret_access_key": _option(options, "aws_secret_access_key", "secret_access_key"),
            "aws_session_token": _option(options, "aws_session_token", "session_token", "token"),
            "region_name": _option(options, "aws_region", "region", "aws_default_region"),
        }
        return cls(boto3.client("s3", **{k: v for k, v in arguments.items() if v}))

    def storage_class(self, tier: Tier) -> str:
        return self.CLASSES[tier]

    def list(self, uri: str) -> Iterator[StoredObject]:
        bucket, prefix = _bucket_and_prefix(uri)
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            for page in pages:
                for item in page.get("Contents", []):
                    name = item.get("StorageClass") or "STANDARD"  # S3 leaves it out for STANDARD at times
                    tier = _tier_of(name, self.CLASSES, self._ALSO_HOT)
                    yield StoredObject(item["Key"][len(prefix) :], int(item["Size"]), tier, name)
        except Exception as exc:  # botocore's errors, imported lazily with boto3
            raise LakeError(f"cannot list {uri}: {exc}") from exc

    def move(self, uri: str, key: str, tier: Tier) -> None:
        bucket, prefix = _bucket_and_prefix(uri)
        full = prefix + key
        try:
            self._client.copy_object(
                Bucket=bucket,
                Key=full,
                CopySource={"Bucket": bucket, "Key": full},
                StorageClass=self.CLASSES[tier],
                MetadataDirective="COPY",
            )
        except Exception as exc:
            raise LakeError(f"cannot move s3://{bucket}/{full} to {self.CLASSES[tier]}: {exc}") from exc


class AzureTiers:
    """Azure Blob Storage (and ADLS Gen2), through azure-storage-blob: ``list_blobs`` and
    ``set_standard_blob_tier`` (a change of the blob's access tier, not a copy). Not tested here."""

    provider = "azure"
    moves = True
    max_object_bytes: int | None = None
    CLASSES: ClassVar[Mapping[Tier, str]] = {"hot": "Hot", "warm": "Cool", "cold": "Cold"}

    def __init__(self, service: Any) -> None:
        self._service = service  # a BlobServiceClient

    @classmethod
    def connect(cls, uri: str, options: Mapping[str, str], *, account: str | None = None) -> AzureTiers:
        """The account from the URI (``abfss://container@account.dfs.core.windows.net/...``), the storage
        options or ``account``; its key from the storage options, else azure-identity's
        ``DefaultAzureCredential`` (service principal variables, managed identity, ``az login``)."""
        try:
            from azure.storage.blob import BlobServiceClient
        except ImportError as exc:
            raise ConfigError(
                "moving an Azure lake's old partitions to cooler access tiers needs azure-storage-blob: "
                "pip install 'vhlake[azure]' (or turn tiering off with VHLAKE_TIERING=false)"
            ) from exc
        host = urlsplit(uri).netloc.partition("@")[2]  # account.dfs.core.windows.net (or a sovereign cloud's)
        name = host.split(".")[0] or _option(options, "azure_storage_account_name", "account_name") or account
        if not name:
            raise ConfigError(
                f"which Azure storage account holds {uri}? Name it in the URI "
                "(abfss://container@account.dfs.core.windows.net/...) or in AZURE_STORAGE_ACCOUNT_NAME"
            )
        credential: Any = _option(options, "azure_storage_account_key", "account_key", "access_key")
        if credential is None:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError as exc:
                raise ConfigError(
                    "Azure credentials need azure-identity: pip install 'vhlake[azure]'"
                ) from exc
            credential = DefaultAzureCredential()
        url = (
            f"https://{host.replace('.dfs.', '.blob.')}" if host else f"https://{name}.blob.core.windows.net"
        )
        return cls(BlobServiceClient(account_url=url, credential=credential))

    @staticmethod
    def _container_and_prefix(uri: str) -> tuple[str, str]:
        parts = urlsplit(uri)
        container = parts.netloc.partition("@")[0]
        prefix = parts.path.strip("/")
        return container, f"{prefix}/" if prefix else ""

    def storage_class(self, tier: Tier) -> str:
        return self.CLASSES[tier]

    def list(self, uri: str) -> Iterator[StoredObject]:
        container, prefix = self._container_and_prefix(uri)
        try:
            client = self._service.get_container_client(container)
            for blob in client.list_blobs(name_starts_with=prefix):
                # an enum of str values, or None where the account's default tier applies unreported
                tier_name = str(getattr(blob.blob_tier, "value", blob.blob_tier) or "Hot")
                tier = _tier_of(tier_name, self.CLASSES, frozenset())
                yield StoredObject(blob.name[len(prefix) :], int(blob.size), tier, tier_name)
        except Exception as exc:  # azure.core's errors, imported lazily with the SDK
            raise LakeError(f"cannot list {uri}: {exc}") from exc

    def move(self, uri: str, key: str, tier: Tier) -> None:
        container, prefix = self._container_and_prefix(uri)
        try:
            blob = self._service.get_blob_client(container, prefix + key)
            blob.set_standard_blob_tier(self.CLASSES[tier])
        except Exception as exc:
            raise LakeError(f"cannot move {uri}/{key} to {self.CLASSES[tier]}: {exc}") from exc


class GcsTiers:
    """Google Cloud Storage, through google-cloud-storage: ``list_blobs`` and ``update_storage_class``
    (a server-side rewrite onto the same name; guarded by the object's generation, so an object replaced
    meanwhile is not overwritten). Credentials are Google's application default ones. Not tested here."""

    provider = "gcs"
    moves = True
    max_object_bytes: int | None = None
    CLASSES: ClassVar[Mapping[Tier, str]] = {"hot": "STANDARD", "warm": "NEARLINE", "cold": "COLDLINE"}
    # Legacy names of the standard class.
    _ALSO_HOT = frozenset({"MULTI_REGIONAL", "REGIONAL", "DURABLE_REDUCED_AVAILABILITY"})

    def __init__(self, client: Any) -> None:
        self._client = client  # a google.cloud.storage.Client
        self._generations: dict[tuple[str, str], int] = {}

    @classmethod
    def connect(cls) -> GcsTiers:
        try:
            from google.cloud import storage
        except ImportError as exc:
            raise ConfigError(
                "moving a GCS lake's old partitions to colder storage classes needs google-cloud-storage: "
                "pip install 'vhlake[gcs]' (or turn tiering off with VHLAKE_TIERING=false)"
            ) from exc
        return cls(storage.Client())

    def storage_class(self, tier: Tier) -> str:
        return self.CLASSES[tier]

    def list(self, uri: str) -> Iterator[StoredObject]:
        bucket, prefix = _bucket_and_prefix(uri)
        try:
            for blob in self._client.list_blobs(bucket, prefix=prefix):
                self._generations[(bucket, blob.name)] = blob.generation
                name = str(blob.storage_class or "STANDARD")
                tier = _tier_of(name, self.CLASSES, self._ALSO_HOT)
                yield StoredObject(blob.name[len(prefix) :], int(blob.size), tier, name)
        except Exception as exc:  # google.api_core's errors, imported lazily with the SDK
            raise LakeError(f"cannot list {uri}: {exc}") from exc

    def move(self, uri: str, key: str, tier: Tier) -> None:
        bucket, prefix = _bucket_and_prefix(uri)
        name = prefix + key
        try:
            blob = self._client.bucket(bucket).blob(name)
            generation = self._generations.get((bucket, name))
            blob.update_storage_class(self.CLASSES[tier], if_generation_match=generation)
        except Exception as exc:
            raise LakeError(f"cannot move gs://{bucket}/{name} to {self.CLASSES[tier]}: {exc}") from exc


class LocalTiers:
    """A local disk: one tier. Listed (for the costs), never moved."""

    provider = "local"
    moves = False
    max_object_bytes: int | None = None

    def storage_class(self, tier: Tier) -> str:
        return "local disk"

    def list(self, uri: str) -> Iterator[StoredObject]:
        root = Path(uri.removeprefix("file://")).expanduser()
        for folder, _, names in os.walk(root):
            for name in sorted(names):
                path = Path(folder) / name
                try:
                    size = path.stat().st_size
                except FileNotFoundError:  # removed while listed (a vacuum, a compaction)
                    continue
                yield StoredObject(path.relative_to(root).as_posix(), size, "hot", "local disk")

    def move(self, uri: str, key: str, tier: Tier) -> None:
        raise LakeError("a local disk has one storage tier: nothing moves there")


_S3 = ("s3", "s3a")
_AZURE = ("az", "azure", "abfs", "abfss", "adl")
_GCS = ("gs", "gcs")


def object_tiers(
    uri: str,
    options: Mapping[str, str],
    *,
    s3_endpoint: str | None = None,
    azure_account: str | None = None,
) -> ObjectTiers:
    """The storage classes of the store ``uri`` is on (a lake's URI and its storage options).

    Raises:
        ConfigError: the store's SDK is not installed, or the store has no storage classes vhlake knows.
    """
    if "://" not in uri or uri.startswith("file://"):
        return LocalTiers()
    scheme = uri.split("://", 1)[0].lower()
    if scheme in _S3:
        return S3Tiers.connect(options, endpoint=s3_endpoint)
    if scheme in _AZURE:
        return AzureTiers.connect(uri, options, account=azure_account)
    if scheme in _GCS:
        return GcsTiers.connect()
    raise ConfigError(f"storage tiers are not known for {scheme}:// lakes (S3, Azure Blob, GCS, local disk)")
