from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Route(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROUTE_AUTO: _ClassVar[Route]
    ROUTE_LOCAL: _ClassVar[Route]
    ROUTE_REMOTE: _ClassVar[Route]
    ROUTE_REPLICATE: _ClassVar[Route]

class Engine(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ENGINE_AUTO: _ClassVar[Engine]
    ENGINE_ARROW: _ClassVar[Engine]
    ENGINE_SPARK: _ClassVar[Engine]
ROUTE_AUTO: Route
ROUTE_LOCAL: Route
ROUTE_REMOTE: Route
ROUTE_REPLICATE: Route
ENGINE_AUTO: Engine
ENGINE_ARROW: Engine
ENGINE_SPARK: Engine

class OpenSessionRequest(_message.Message):
    __slots__ = ("datasets", "island")
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedScalarFieldContainer[str]
    island: str
    def __init__(self, datasets: _Optional[_Iterable[str]] = ..., island: _Optional[str] = ...) -> None: ...

class SessionInfo(_message.Message):
    __slots__ = ("id", "user", "island", "created", "idle_seconds", "operations", "running", "memory_bytes", "datasets", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    IDLE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    OPERATIONS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    user: str
    island: str
    created: float
    idle_seconds: float
    operations: int
    running: int
    memory_bytes: int
    datasets: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, id: _Optional[str] = ..., user: _Optional[str] = ..., island: _Optional[str] = ..., created: _Optional[float] = ..., idle_seconds: _Optional[float] = ..., operations: _Optional[int] = ..., running: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., datasets: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ListSessionsRequest(_message.Message):
    __slots__ = ("island",)
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    island: str
    def __init__(self, island: _Optional[str] = ...) -> None: ...

class ListSessionsResponse(_message.Message):
    __slots__ = ("sessions",)
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    sessions: _containers.RepeatedCompositeFieldContainer[SessionInfo]
    def __init__(self, sessions: _Optional[_Iterable[_Union[SessionInfo, _Mapping]]] = ...) -> None: ...

class KillSessionRequest(_message.Message):
    __slots__ = ("id", "island")
    ID_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    id: str
    island: str
    def __init__(self, id: _Optional[str] = ..., island: _Optional[str] = ...) -> None: ...

class CacheTableRequest(_message.Message):
    __slots__ = ("dataset", "cone", "island")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    CONE_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    cone: str
    island: str
    def __init__(self, dataset: _Optional[str] = ..., cone: _Optional[str] = ..., island: _Optional[str] = ...) -> None: ...

class CachedTable(_message.Message):
    __slots__ = ("dataset", "island", "cone", "files", "memory_bytes", "created", "last_used")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    CONE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    LAST_USED_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    island: str
    cone: str
    files: int
    memory_bytes: int
    created: float
    last_used: float
    def __init__(self, dataset: _Optional[str] = ..., island: _Optional[str] = ..., cone: _Optional[str] = ..., files: _Optional[int] = ..., memory_bytes: _Optional[int] = ..., created: _Optional[float] = ..., last_used: _Optional[float] = ...) -> None: ...

class ListCachedTablesRequest(_message.Message):
    __slots__ = ("island",)
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    island: str
    def __init__(self, island: _Optional[str] = ...) -> None: ...

class ListCachedTablesResponse(_message.Message):
    __slots__ = ("tables",)
    TABLES_FIELD_NUMBER: _ClassVar[int]
    tables: _containers.RepeatedCompositeFieldContainer[CachedTable]
    def __init__(self, tables: _Optional[_Iterable[_Union[CachedTable, _Mapping]]] = ...) -> None: ...

class SubmitJobRequest(_message.Message):
    __slots__ = ("code", "filename", "args", "datasets", "island")
    CODE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    code: str
    filename: str
    args: _containers.RepeatedScalarFieldContainer[str]
    datasets: _containers.RepeatedScalarFieldContainer[str]
    island: str
    def __init__(self, code: _Optional[str] = ..., filename: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., datasets: _Optional[_Iterable[str]] = ..., island: _Optional[str] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("id", "user", "island", "state", "reason", "exit_code", "submitted", "started", "finished", "filename", "args", "datasets", "published")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_FIELD_NUMBER: _ClassVar[int]
    STARTED_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    PUBLISHED_FIELD_NUMBER: _ClassVar[int]
    id: str
    user: str
    island: str
    state: str
    reason: str
    exit_code: int
    submitted: float
    started: float
    finished: float
    filename: str
    args: _containers.RepeatedScalarFieldContainer[str]
    datasets: _containers.RepeatedScalarFieldContainer[str]
    published: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., user: _Optional[str] = ..., island: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., exit_code: _Optional[int] = ..., submitted: _Optional[float] = ..., started: _Optional[float] = ..., finished: _Optional[float] = ..., filename: _Optional[str] = ..., args: _Optional[_Iterable[str]] = ..., datasets: _Optional[_Iterable[str]] = ..., published: _Optional[_Iterable[str]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("island",)
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    island: str
    def __init__(self, island: _Optional[str] = ...) -> None: ...

class ListJobsResponse(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class JobRequest(_message.Message):
    __slots__ = ("id", "island")
    ID_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    id: str
    island: str
    def __init__(self, id: _Optional[str] = ..., island: _Optional[str] = ...) -> None: ...

class JobLogsRequest(_message.Message):
    __slots__ = ("id", "island", "follow", "offset")
    ID_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    id: str
    island: str
    follow: bool
    offset: int
    def __init__(self, id: _Optional[str] = ..., island: _Optional[str] = ..., follow: _Optional[bool] = ..., offset: _Optional[int] = ...) -> None: ...

class JobLogChunk(_message.Message):
    __slots__ = ("data", "job")
    DATA_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    job: JobInfo
    def __init__(self, data: _Optional[bytes] = ..., job: _Optional[_Union[JobInfo, _Mapping]] = ...) -> None: ...

class CreateTokenRequest(_message.Message):
    __slots__ = ("user", "groups", "rights", "admin", "expires_seconds")
    USER_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    RIGHTS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_SECONDS_FIELD_NUMBER: _ClassVar[int]
    user: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    rights: _containers.RepeatedScalarFieldContainer[str]
    admin: bool
    expires_seconds: float
    def __init__(self, user: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., rights: _Optional[_Iterable[str]] = ..., admin: _Optional[bool] = ..., expires_seconds: _Optional[float] = ...) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("id", "user", "groups", "rights", "admin", "issued", "expires", "issuer", "revoked_by", "revoked_at", "token")
    ID_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    RIGHTS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    ISSUED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    ISSUER_FIELD_NUMBER: _ClassVar[int]
    REVOKED_BY_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    user: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    rights: _containers.RepeatedScalarFieldContainer[str]
    admin: bool
    issued: float
    expires: float
    issuer: str
    revoked_by: str
    revoked_at: float
    token: str
    def __init__(self, id: _Optional[str] = ..., user: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., rights: _Optional[_Iterable[str]] = ..., admin: _Optional[bool] = ..., issued: _Optional[float] = ..., expires: _Optional[float] = ..., issuer: _Optional[str] = ..., revoked_by: _Optional[str] = ..., revoked_at: _Optional[float] = ..., token: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTokensResponse(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...

class RevokeTokenRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Identity(_message.Message):
    __slots__ = ("user", "groups", "rights", "admin", "token_id", "anonymous", "island")
    USER_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    RIGHTS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    user: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    rights: _containers.RepeatedScalarFieldContainer[str]
    admin: bool
    token_id: str
    anonymous: bool
    island: str
    def __init__(self, user: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ..., rights: _Optional[_Iterable[str]] = ..., admin: _Optional[bool] = ..., token_id: _Optional[str] = ..., anonymous: _Optional[bool] = ..., island: _Optional[str] = ...) -> None: ...

class SetAccessRequest(_message.Message):
    __slots__ = ("dataset", "reader", "grant", "public_after", "route_path")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    READER_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_AFTER_FIELD_NUMBER: _ClassVar[int]
    ROUTE_PATH_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    reader: str
    grant: bool
    public_after: str
    route_path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset: _Optional[str] = ..., reader: _Optional[str] = ..., grant: _Optional[bool] = ..., public_after: _Optional[str] = ..., route_path: _Optional[_Iterable[str]] = ...) -> None: ...

class GetAuditRequest(_message.Message):
    __slots__ = ("user", "since", "limit")
    USER_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    user: str
    since: float
    limit: int
    def __init__(self, user: _Optional[str] = ..., since: _Optional[float] = ..., limit: _Optional[int] = ...) -> None: ...

class AuditEntry(_message.Message):
    __slots__ = ("ts", "user", "method", "datasets", "rows", "bytes", "outcome", "detail", "island")
    TS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    ts: float
    user: str
    method: str
    datasets: _containers.RepeatedScalarFieldContainer[str]
    rows: int
    bytes: int
    outcome: str
    detail: str
    island: str
    def __init__(self, ts: _Optional[float] = ..., user: _Optional[str] = ..., method: _Optional[str] = ..., datasets: _Optional[_Iterable[str]] = ..., rows: _Optional[int] = ..., bytes: _Optional[int] = ..., outcome: _Optional[str] = ..., detail: _Optional[str] = ..., island: _Optional[str] = ...) -> None: ...

class GetAuditResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[AuditEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[AuditEntry, _Mapping]]] = ...) -> None: ...

class SubscriptionSpec(_message.Message):
    __slots__ = ("dataset_pattern", "where", "has_cone", "ra", "dec", "radius", "moc", "columns", "mode", "start_at", "name")
    DATASET_PATTERN_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    HAS_CONE_FIELD_NUMBER: _ClassVar[int]
    RA_FIELD_NUMBER: _ClassVar[int]
    DEC_FIELD_NUMBER: _ClassVar[int]
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    MOC_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    START_AT_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    dataset_pattern: str
    where: str
    has_cone: bool
    ra: float
    dec: float
    radius: float
    moc: bytes
    columns: _containers.RepeatedScalarFieldContainer[str]
    mode: str
    start_at: str
    name: str
    def __init__(self, dataset_pattern: _Optional[str] = ..., where: _Optional[str] = ..., has_cone: _Optional[bool] = ..., ra: _Optional[float] = ..., dec: _Optional[float] = ..., radius: _Optional[float] = ..., moc: _Optional[bytes] = ..., columns: _Optional[_Iterable[str]] = ..., mode: _Optional[str] = ..., start_at: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("subscribe", "ack")
    SUBSCRIBE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    subscribe: SubscriptionSpec
    ack: int
    def __init__(self, subscribe: _Optional[_Union[SubscriptionSpec, _Mapping]] = ..., ack: _Optional[int] = ...) -> None: ...

class SubscriptionInfo(_message.Message):
    __slots__ = ("name", "dataset_pattern", "where", "region", "columns", "mode", "cursor", "position", "lag_changes", "lag_seconds", "durable", "connected", "created", "island", "error", "owner")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATASET_PATTERN_FIELD_NUMBER: _ClassVar[int]
    WHERE_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    LAG_CHANGES_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DURABLE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    name: str
    dataset_pattern: str
    where: str
    region: str
    columns: _containers.RepeatedScalarFieldContainer[str]
    mode: str
    cursor: int
    position: int
    lag_changes: int
    lag_seconds: float
    durable: bool
    connected: bool
    created: float
    island: str
    error: str
    owner: str
    def __init__(self, name: _Optional[str] = ..., dataset_pattern: _Optional[str] = ..., where: _Optional[str] = ..., region: _Optional[str] = ..., columns: _Optional[_Iterable[str]] = ..., mode: _Optional[str] = ..., cursor: _Optional[int] = ..., position: _Optional[int] = ..., lag_changes: _Optional[int] = ..., lag_seconds: _Optional[float] = ..., durable: _Optional[bool] = ..., connected: _Optional[bool] = ..., created: _Optional[float] = ..., island: _Optional[str] = ..., error: _Optional[str] = ..., owner: _Optional[str] = ...) -> None: ...

class HealpixPixel(_message.Message):
    __slots__ = ("order", "pixel")
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FIELD_NUMBER: _ClassVar[int]
    order: int
    pixel: int
    def __init__(self, order: _Optional[int] = ..., pixel: _Optional[int] = ...) -> None: ...

class SubscriptionEvent(_message.Message):
    __slots__ = ("cursor", "dataset", "island", "op", "partitions", "pixels", "rows", "timestamp", "arrow", "last", "replicated")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    OP_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    ARROW_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    REPLICATED_FIELD_NUMBER: _ClassVar[int]
    cursor: int
    dataset: str
    island: str
    op: str
    partitions: _containers.RepeatedScalarFieldContainer[str]
    pixels: _containers.RepeatedCompositeFieldContainer[HealpixPixel]
    rows: int
    timestamp: float
    arrow: bytes
    last: bool
    replicated: bool
    def __init__(self, cursor: _Optional[int] = ..., dataset: _Optional[str] = ..., island: _Optional[str] = ..., op: _Optional[str] = ..., partitions: _Optional[_Iterable[str]] = ..., pixels: _Optional[_Iterable[_Union[HealpixPixel, _Mapping]]] = ..., rows: _Optional[int] = ..., timestamp: _Optional[float] = ..., arrow: _Optional[bytes] = ..., last: _Optional[bool] = ..., replicated: _Optional[bool] = ...) -> None: ...

class SubscriptionMessage(_message.Message):
    __slots__ = ("started", "event")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    started: SubscriptionInfo
    event: SubscriptionEvent
    def __init__(self, started: _Optional[_Union[SubscriptionInfo, _Mapping]] = ..., event: _Optional[_Union[SubscriptionEvent, _Mapping]] = ...) -> None: ...

class ListSubscriptionsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListSubscriptionsResponse(_message.Message):
    __slots__ = ("subscriptions",)
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    subscriptions: _containers.RepeatedCompositeFieldContainer[SubscriptionInfo]
    def __init__(self, subscriptions: _Optional[_Iterable[_Union[SubscriptionInfo, _Mapping]]] = ...) -> None: ...

class DeleteSubscriptionRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class ReplicateRequest(_message.Message):
    __slots__ = ("dataset", "to_island", "has_cone", "ra", "dec", "radius", "moc", "lifetime_seconds", "protocol", "detach", "route_path")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    TO_ISLAND_FIELD_NUMBER: _ClassVar[int]
    HAS_CONE_FIELD_NUMBER: _ClassVar[int]
    RA_FIELD_NUMBER: _ClassVar[int]
    DEC_FIELD_NUMBER: _ClassVar[int]
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    MOC_FIELD_NUMBER: _ClassVar[int]
    LIFETIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    DETACH_FIELD_NUMBER: _ClassVar[int]
    ROUTE_PATH_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    to_island: str
    has_cone: bool
    ra: float
    dec: float
    radius: float
    moc: bytes
    lifetime_seconds: float
    protocol: str
    detach: bool
    route_path: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, dataset: _Optional[str] = ..., to_island: _Optional[str] = ..., has_cone: _Optional[bool] = ..., ra: _Optional[float] = ..., dec: _Optional[float] = ..., radius: _Optional[float] = ..., moc: _Optional[bytes] = ..., lifetime_seconds: _Optional[float] = ..., protocol: _Optional[str] = ..., detach: _Optional[bool] = ..., route_path: _Optional[_Iterable[str]] = ...) -> None: ...

class ReplicationRule(_message.Message):
    __slots__ = ("id", "dataset", "island", "region", "protocol", "created", "expires", "state", "files_total", "files_done", "files_failed", "bytes_total", "bytes_done", "errors", "owner")
    ID_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    REGION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FILES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FILES_DONE_FIELD_NUMBER: _ClassVar[int]
    FILES_FAILED_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    id: str
    dataset: str
    island: str
    region: str
    protocol: str
    created: float
    expires: float
    state: str
    files_total: int
    files_done: int
    files_failed: int
    bytes_total: int
    bytes_done: int
    errors: _containers.RepeatedScalarFieldContainer[str]
    owner: str
    def __init__(self, id: _Optional[str] = ..., dataset: _Optional[str] = ..., island: _Optional[str] = ..., region: _Optional[str] = ..., protocol: _Optional[str] = ..., created: _Optional[float] = ..., expires: _Optional[float] = ..., state: _Optional[str] = ..., files_total: _Optional[int] = ..., files_done: _Optional[int] = ..., files_failed: _Optional[int] = ..., bytes_total: _Optional[int] = ..., bytes_done: _Optional[int] = ..., errors: _Optional[_Iterable[str]] = ..., owner: _Optional[str] = ...) -> None: ...

class ReplicationProgress(_message.Message):
    __slots__ = ("rule", "elapsed_seconds")
    RULE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    rule: ReplicationRule
    elapsed_seconds: float
    def __init__(self, rule: _Optional[_Union[ReplicationRule, _Mapping]] = ..., elapsed_seconds: _Optional[float] = ...) -> None: ...

class ListRulesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListRulesResponse(_message.Message):
    __slots__ = ("rules",)
    RULES_FIELD_NUMBER: _ClassVar[int]
    rules: _containers.RepeatedCompositeFieldContainer[ReplicationRule]
    def __init__(self, rules: _Optional[_Iterable[_Union[ReplicationRule, _Mapping]]] = ...) -> None: ...

class DeleteRuleRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetCacheRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CacheDataset(_message.Message):
    __slots__ = ("dataset", "files", "bytes")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    files: int
    bytes: int
    def __init__(self, dataset: _Optional[str] = ..., files: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class CacheUsage(_message.Message):
    __slots__ = ("island", "quota_bytes", "used_bytes", "pinned_bytes", "cached_bytes", "files", "pinned_files", "datasets", "errors")
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    PINNED_BYTES_FIELD_NUMBER: _ClassVar[int]
    CACHED_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    PINNED_FILES_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    island: str
    quota_bytes: int
    used_bytes: int
    pinned_bytes: int
    cached_bytes: int
    files: int
    pinned_files: int
    datasets: _containers.RepeatedCompositeFieldContainer[CacheDataset]
    errors: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, island: _Optional[str] = ..., quota_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ..., pinned_bytes: _Optional[int] = ..., cached_bytes: _Optional[int] = ..., files: _Optional[int] = ..., pinned_files: _Optional[int] = ..., datasets: _Optional[_Iterable[_Union[CacheDataset, _Mapping]]] = ..., errors: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteDatasetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class DeleteDatasetResponse(_message.Message):
    __slots__ = ("deleted", "files_removed")
    DELETED_FIELD_NUMBER: _ClassVar[int]
    FILES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    deleted: bool
    files_removed: bool
    def __init__(self, deleted: _Optional[bool] = ..., files_removed: _Optional[bool] = ...) -> None: ...

class ListPeersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerState(_message.Message):
    __slots__ = ("island", "address", "state", "last_seq", "error")
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    island: str
    address: str
    state: str
    last_seq: int
    error: str
    def __init__(self, island: _Optional[str] = ..., address: _Optional[str] = ..., state: _Optional[str] = ..., last_seq: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class ListPeersResponse(_message.Message):
    __slots__ = ("peers",)
    PEERS_FIELD_NUMBER: _ClassVar[int]
    peers: _containers.RepeatedCompositeFieldContainer[PeerState]
    def __init__(self, peers: _Optional[_Iterable[_Union[PeerState, _Mapping]]] = ...) -> None: ...

class AddPeerRequest(_message.Message):
    __slots__ = ("address",)
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    address: str
    def __init__(self, address: _Optional[str] = ...) -> None: ...

class RemovePeerRequest(_message.Message):
    __slots__ = ("peer",)
    PEER_FIELD_NUMBER: _ClassVar[int]
    peer: str
    def __init__(self, peer: _Optional[str] = ...) -> None: ...

class GetInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class IslandInfo(_message.Message):
    __slots__ = ("name", "version", "protocol_version", "grpc_address", "http_url", "spark_ready", "spark_master", "spark_error", "datasets", "catalog_sequence", "running_queries", "spark_active_jobs", "root_url", "workers", "peer_address", "anonymous", "spark_storage_bytes", "sessions", "data_url")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    GRPC_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HTTP_URL_FIELD_NUMBER: _ClassVar[int]
    SPARK_READY_FIELD_NUMBER: _ClassVar[int]
    SPARK_MASTER_FIELD_NUMBER: _ClassVar[int]
    SPARK_ERROR_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    CATALOG_SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_QUERIES_FIELD_NUMBER: _ClassVar[int]
    SPARK_ACTIVE_JOBS_FIELD_NUMBER: _ClassVar[int]
    ROOT_URL_FIELD_NUMBER: _ClassVar[int]
    WORKERS_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ANONYMOUS_FIELD_NUMBER: _ClassVar[int]
    SPARK_STORAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    DATA_URL_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    protocol_version: int
    grpc_address: str
    http_url: str
    spark_ready: bool
    spark_master: str
    spark_error: str
    datasets: int
    catalog_sequence: int
    running_queries: int
    spark_active_jobs: int
    root_url: str
    workers: _containers.RepeatedScalarFieldContainer[str]
    peer_address: str
    anonymous: str
    spark_storage_bytes: int
    sessions: int
    data_url: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., protocol_version: _Optional[int] = ..., grpc_address: _Optional[str] = ..., http_url: _Optional[str] = ..., spark_ready: _Optional[bool] = ..., spark_master: _Optional[str] = ..., spark_error: _Optional[str] = ..., datasets: _Optional[int] = ..., catalog_sequence: _Optional[int] = ..., running_queries: _Optional[int] = ..., spark_active_jobs: _Optional[int] = ..., root_url: _Optional[str] = ..., workers: _Optional[_Iterable[str]] = ..., peer_address: _Optional[str] = ..., anonymous: _Optional[str] = ..., spark_storage_bytes: _Optional[int] = ..., sessions: _Optional[int] = ..., data_url: _Optional[str] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ("pattern", "with_partitions")
    PATTERN_FIELD_NUMBER: _ClassVar[int]
    WITH_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    pattern: str
    with_partitions: bool
    def __init__(self, pattern: _Optional[str] = ..., with_partitions: _Optional[bool] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...

class DescribeDatasetRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class Partition(_message.Message):
    __slots__ = ("has_pixel", "order", "pixel", "path", "num_rows", "num_bytes", "adler32", "stats_json", "islands")
    HAS_PIXEL_FIELD_NUMBER: _ClassVar[int]
    ORDER_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    NUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    ADLER32_FIELD_NUMBER: _ClassVar[int]
    STATS_JSON_FIELD_NUMBER: _ClassVar[int]
    ISLANDS_FIELD_NUMBER: _ClassVar[int]
    has_pixel: bool
    order: int
    pixel: int
    path: str
    num_rows: int
    num_bytes: int
    adler32: int
    stats_json: str
    islands: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, has_pixel: _Optional[bool] = ..., order: _Optional[int] = ..., pixel: _Optional[int] = ..., path: _Optional[str] = ..., num_rows: _Optional[int] = ..., num_bytes: _Optional[int] = ..., adler32: _Optional[int] = ..., stats_json: _Optional[str] = ..., islands: _Optional[_Iterable[str]] = ...) -> None: ...

class Dataset(_message.Message):
    __slots__ = ("name", "origin", "kind", "arrow_schema", "num_rows", "num_bytes", "ra_column", "dec_column", "hats_properties", "moc", "sky_fraction", "partitions", "num_partitions", "created", "owner", "readers", "public_after", "hats_urls")
    class HatsPropertiesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ARROW_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    NUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    RA_COLUMN_FIELD_NUMBER: _ClassVar[int]
    DEC_COLUMN_FIELD_NUMBER: _ClassVar[int]
    HATS_PROPERTIES_FIELD_NUMBER: _ClassVar[int]
    MOC_FIELD_NUMBER: _ClassVar[int]
    SKY_FRACTION_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    NUM_PARTITIONS_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    OWNER_FIELD_NUMBER: _ClassVar[int]
    READERS_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_AFTER_FIELD_NUMBER: _ClassVar[int]
    HATS_URLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    origin: str
    kind: str
    arrow_schema: bytes
    num_rows: int
    num_bytes: int
    ra_column: str
    dec_column: str
    hats_properties: _containers.ScalarMap[str, str]
    moc: str
    sky_fraction: float
    partitions: _containers.RepeatedCompositeFieldContainer[Partition]
    num_partitions: int
    created: str
    owner: str
    readers: _containers.RepeatedScalarFieldContainer[str]
    public_after: str
    hats_urls: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, name: _Optional[str] = ..., origin: _Optional[str] = ..., kind: _Optional[str] = ..., arrow_schema: _Optional[bytes] = ..., num_rows: _Optional[int] = ..., num_bytes: _Optional[int] = ..., ra_column: _Optional[str] = ..., dec_column: _Optional[str] = ..., hats_properties: _Optional[_Mapping[str, str]] = ..., moc: _Optional[str] = ..., sky_fraction: _Optional[float] = ..., partitions: _Optional[_Iterable[_Union[Partition, _Mapping]]] = ..., num_partitions: _Optional[int] = ..., created: _Optional[str] = ..., owner: _Optional[str] = ..., readers: _Optional[_Iterable[str]] = ..., public_after: _Optional[str] = ..., hats_urls: _Optional[_Iterable[str]] = ...) -> None: ...

class QueryRequest(_message.Message):
    __slots__ = ("sql", "route", "engine", "max_rows", "max_bytes", "query_id", "compression", "route_path", "direct")
    SQL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    ROUTE_PATH_FIELD_NUMBER: _ClassVar[int]
    DIRECT_FIELD_NUMBER: _ClassVar[int]
    sql: str
    route: Route
    engine: Engine
    max_rows: int
    max_bytes: int
    query_id: str
    compression: str
    route_path: _containers.RepeatedScalarFieldContainer[str]
    direct: bool
    def __init__(self, sql: _Optional[str] = ..., route: _Optional[_Union[Route, str]] = ..., engine: _Optional[_Union[Engine, str]] = ..., max_rows: _Optional[int] = ..., max_bytes: _Optional[int] = ..., query_id: _Optional[str] = ..., compression: _Optional[str] = ..., route_path: _Optional[_Iterable[str]] = ..., direct: _Optional[bool] = ...) -> None: ...

class DirectFile(_message.Message):
    __slots__ = ("url", "size", "row_groups", "spans", "num_rows", "island")
    URL_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ROW_GROUPS_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    ISLAND_FIELD_NUMBER: _ClassVar[int]
    url: str
    size: int
    row_groups: _containers.RepeatedScalarFieldContainer[int]
    spans: _containers.RepeatedScalarFieldContainer[int]
    num_rows: int
    island: str
    def __init__(self, url: _Optional[str] = ..., size: _Optional[int] = ..., row_groups: _Optional[_Iterable[int]] = ..., spans: _Optional[_Iterable[int]] = ..., num_rows: _Optional[int] = ..., island: _Optional[str] = ...) -> None: ...

class DirectCone(_message.Message):
    __slots__ = ("ra", "dec", "radius")
    RA_FIELD_NUMBER: _ClassVar[int]
    DEC_FIELD_NUMBER: _ClassVar[int]
    RADIUS_FIELD_NUMBER: _ClassVar[int]
    ra: float
    dec: float
    radius: float
    def __init__(self, ra: _Optional[float] = ..., dec: _Optional[float] = ..., radius: _Optional[float] = ...) -> None: ...

class DirectRead(_message.Message):
    __slots__ = ("files", "columns", "names", "cones", "ra_column", "dec_column", "has_limit", "limit", "max_rows", "max_bytes", "local", "healpix_column", "healpix_ranges", "healpix_inner_ranges")
    FILES_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    CONES_FIELD_NUMBER: _ClassVar[int]
    RA_COLUMN_FIELD_NUMBER: _ClassVar[int]
    DEC_COLUMN_FIELD_NUMBER: _ClassVar[int]
    HAS_LIMIT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    MAX_ROWS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOCAL_FIELD_NUMBER: _ClassVar[int]
    HEALPIX_COLUMN_FIELD_NUMBER: _ClassVar[int]
    HEALPIX_RANGES_FIELD_NUMBER: _ClassVar[int]
    HEALPIX_INNER_RANGES_FIELD_NUMBER: _ClassVar[int]
    files: _containers.RepeatedCompositeFieldContainer[DirectFile]
    columns: _containers.RepeatedScalarFieldContainer[str]
    names: _containers.RepeatedScalarFieldContainer[str]
    cones: _containers.RepeatedCompositeFieldContainer[DirectCone]
    ra_column: str
    dec_column: str
    has_limit: bool
    limit: int
    max_rows: int
    max_bytes: int
    local: LocalRead
    healpix_column: str
    healpix_ranges: _containers.RepeatedScalarFieldContainer[int]
    healpix_inner_ranges: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, files: _Optional[_Iterable[_Union[DirectFile, _Mapping]]] = ..., columns: _Optional[_Iterable[str]] = ..., names: _Optional[_Iterable[str]] = ..., cones: _Optional[_Iterable[_Union[DirectCone, _Mapping]]] = ..., ra_column: _Optional[str] = ..., dec_column: _Optional[str] = ..., has_limit: _Optional[bool] = ..., limit: _Optional[int] = ..., max_rows: _Optional[int] = ..., max_bytes: _Optional[int] = ..., local: _Optional[_Union[LocalRead, _Mapping]] = ..., healpix_column: _Optional[str] = ..., healpix_ranges: _Optional[_Iterable[int]] = ..., healpix_inner_ranges: _Optional[_Iterable[int]] = ...) -> None: ...

class LocalRead(_message.Message):
    __slots__ = ("socket", "grant", "key", "mappable")
    SOCKET_FIELD_NUMBER: _ClassVar[int]
    GRANT_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    MAPPABLE_FIELD_NUMBER: _ClassVar[int]
    socket: str
    grant: bytes
    key: bytes
    mappable: bool
    def __init__(self, socket: _Optional[str] = ..., grant: _Optional[bytes] = ..., key: _Optional[bytes] = ..., mappable: _Optional[bool] = ...) -> None: ...

class QueryHeader(_message.Message):
    __slots__ = ("query_id", "arrow_schema", "plan", "direct")
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    ARROW_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    DIRECT_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    arrow_schema: bytes
    plan: QueryPlan
    direct: DirectRead
    def __init__(self, query_id: _Optional[str] = ..., arrow_schema: _Optional[bytes] = ..., plan: _Optional[_Union[QueryPlan, _Mapping]] = ..., direct: _Optional[_Union[DirectRead, _Mapping]] = ...) -> None: ...

class ArrowChunk(_message.Message):
    __slots__ = ("body", "more")
    BODY_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    body: bytes
    more: bool
    def __init__(self, body: _Optional[bytes] = ..., more: _Optional[bool] = ...) -> None: ...

class QueryTrailer(_message.Message):
    __slots__ = ("num_rows", "num_bytes", "num_batches", "elapsed_seconds", "engine")
    NUM_ROWS_FIELD_NUMBER: _ClassVar[int]
    NUM_BYTES_FIELD_NUMBER: _ClassVar[int]
    NUM_BATCHES_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    num_rows: int
    num_bytes: int
    num_batches: int
    elapsed_seconds: float
    engine: str
    def __init__(self, num_rows: _Optional[int] = ..., num_bytes: _Optional[int] = ..., num_batches: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ..., engine: _Optional[str] = ...) -> None: ...

class QueryResponse(_message.Message):
    __slots__ = ("header", "chunk", "trailer")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TRAILER_FIELD_NUMBER: _ClassVar[int]
    header: QueryHeader
    chunk: ArrowChunk
    trailer: QueryTrailer
    def __init__(self, header: _Optional[_Union[QueryHeader, _Mapping]] = ..., chunk: _Optional[_Union[ArrowChunk, _Mapping]] = ..., trailer: _Optional[_Union[QueryTrailer, _Mapping]] = ...) -> None: ...

class DatasetPlan(_message.Message):
    __slots__ = ("dataset", "kind", "islands", "partitions_total", "partitions_read", "bytes_read", "pixels", "pruning", "placement")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    ISLANDS_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PARTITIONS_READ_FIELD_NUMBER: _ClassVar[int]
    BYTES_READ_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    PRUNING_FIELD_NUMBER: _ClassVar[int]
    PLACEMENT_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    kind: str
    islands: _containers.RepeatedScalarFieldContainer[str]
    partitions_total: int
    partitions_read: int
    bytes_read: int
    pixels: _containers.RepeatedScalarFieldContainer[str]
    pruning: str
    placement: str
    def __init__(self, dataset: _Optional[str] = ..., kind: _Optional[str] = ..., islands: _Optional[_Iterable[str]] = ..., partitions_total: _Optional[int] = ..., partitions_read: _Optional[int] = ..., bytes_read: _Optional[int] = ..., pixels: _Optional[_Iterable[str]] = ..., pruning: _Optional[str] = ..., placement: _Optional[str] = ...) -> None: ...

class QueryPlan(_message.Message):
    __slots__ = ("engine", "engine_reason", "datasets", "rewritten_sql", "route")
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    ENGINE_REASON_FIELD_NUMBER: _ClassVar[int]
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    REWRITTEN_SQL_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    engine: str
    engine_reason: str
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetPlan]
    rewritten_sql: str
    route: str
    def __init__(self, engine: _Optional[str] = ..., engine_reason: _Optional[str] = ..., datasets: _Optional[_Iterable[_Union[DatasetPlan, _Mapping]]] = ..., rewritten_sql: _Optional[str] = ..., route: _Optional[str] = ...) -> None: ...

class CancelRequest(_message.Message):
    __slots__ = ("query_id",)
    QUERY_ID_FIELD_NUMBER: _ClassVar[int]
    query_id: str
    def __init__(self, query_id: _Optional[str] = ...) -> None: ...

class CancelResponse(_message.Message):
    __slots__ = ("cancelled",)
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    cancelled: bool
    def __init__(self, cancelled: _Optional[bool] = ...) -> None: ...

class PublishHeader(_message.Message):
    __slots__ = ("dataset", "ra_column", "dec_column", "mode", "readers", "readers_given", "public_after")
    DATASET_FIELD_NUMBER: _ClassVar[int]
    RA_COLUMN_FIELD_NUMBER: _ClassVar[int]
    DEC_COLUMN_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    READERS_FIELD_NUMBER: _ClassVar[int]
    READERS_GIVEN_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_AFTER_FIELD_NUMBER: _ClassVar[int]
    dataset: str
    ra_column: str
    dec_column: str
    mode: str
    readers: _containers.RepeatedScalarFieldContainer[str]
    readers_given: bool
    public_after: str
    def __init__(self, dataset: _Optional[str] = ..., ra_column: _Optional[str] = ..., dec_column: _Optional[str] = ..., mode: _Optional[str] = ..., readers: _Optional[_Iterable[str]] = ..., readers_given: _Optional[bool] = ..., public_after: _Optional[str] = ...) -> None: ...

class PublishRequest(_message.Message):
    __slots__ = ("header", "arrow_schema", "chunk")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    ARROW_SCHEMA_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    header: PublishHeader
    arrow_schema: bytes
    chunk: ArrowChunk
    def __init__(self, header: _Optional[_Union[PublishHeader, _Mapping]] = ..., arrow_schema: _Optional[bytes] = ..., chunk: _Optional[_Union[ArrowChunk, _Mapping]] = ...) -> None: ...

class PublishResponse(_message.Message):
    __slots__ = ("dataset",)
    DATASET_FIELD_NUMBER: _ClassVar[int]
    dataset: Dataset
    def __init__(self, dataset: _Optional[_Union[Dataset, _Mapping]] = ...) -> None: ...

class IngestItem(_message.Message):
    __slots__ = ("path", "dataset", "ra_column", "dec_column", "readers", "readers_given", "public_after")
    PATH_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    RA_COLUMN_FIELD_NUMBER: _ClassVar[int]
    DEC_COLUMN_FIELD_NUMBER: _ClassVar[int]
    READERS_FIELD_NUMBER: _ClassVar[int]
    READERS_GIVEN_FIELD_NUMBER: _ClassVar[int]
    PUBLIC_AFTER_FIELD_NUMBER: _ClassVar[int]
    path: str
    dataset: str
    ra_column: str
    dec_column: str
    readers: _containers.RepeatedScalarFieldContainer[str]
    readers_given: bool
    public_after: str
    def __init__(self, path: _Optional[str] = ..., dataset: _Optional[str] = ..., ra_column: _Optional[str] = ..., dec_column: _Optional[str] = ..., readers: _Optional[_Iterable[str]] = ..., readers_given: _Optional[bool] = ..., public_after: _Optional[str] = ...) -> None: ...

class IngestRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[IngestItem]
    def __init__(self, items: _Optional[_Iterable[_Union[IngestItem, _Mapping]]] = ...) -> None: ...

class IngestResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[Dataset]
    def __init__(self, datasets: _Optional[_Iterable[_Union[Dataset, _Mapping]]] = ...) -> None: ...
