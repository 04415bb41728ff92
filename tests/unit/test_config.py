import pytest

from archipel.errors import InvalidArgument
from island.config import IslandConfig, IslandSection, load_config, write_config


def test_write_then_load_roundtrip(tmp_path):
    cfg = IslandConfig(root=tmp_path)
    cfg.island = IslandSection(name="alpha", port=7771)
    cfg.spark.conf = {"spark.sql.shuffle.partitions": "4"}
    write_config(cfg)
    loaded = load_config(tmp_path, environ={})
    assert loaded.island.name == "alpha" and loaded.island.port == 7771
    assert loaded.spark.conf == {"spark.sql.shuffle.partitions": "4"}
    assert loaded.data_path == tmp_path / "data"


def test_environment_overrides(tmp_path):
    (tmp_path / "archipel.toml").write_text("[island]\nname = 'a'\n")
    cfg = load_config(tmp_path, environ={"ARCHIPEL_QUERY_MAX_ROWS": "10", "ARCHIPEL_SPARK_MASTER": "spark://h:7077",
                                         "ARCHIPEL_SPARK_START": "false", "OTHER": "x"})
    assert cfg.query.max_rows == 10 and cfg.spark.master == "spark://h:7077" and cfg.spark.start is False
    with pytest.raises(InvalidArgument, match="environment: \\[query\\] max_rows"):
        load_config(tmp_path, environ={"ARCHIPEL_QUERY_MAX_ROWS": "lots"})
    with pytest.raises(InvalidArgument, match="unknown key"):
        load_config(tmp_path, environ={"ARCHIPEL_QUERY_NOPE": "1"})


@pytest.mark.parametrize("text,message", [
    ("[island]\nname = 'a'\nport = true\n", "expected int"),
    ("[island]\nport = 1\n", "name is required"),
    ("[ingest]\nname = 'a'\n", "unknown key"),
    ("island = 3\n", "must be a table"),
    ("colour = 3\n", "unknown section"),
    ("[island]\nname='a'\n[spark]\nconf = {a = [1]}\n", "expected dict"),
    ("[island]\nname='a'\n[query]\nchunk_bytes = 10\n", "chunk_bytes"),
])
def test_malformed_config(tmp_path, text, message):
    (tmp_path / "archipel.toml").write_text(text)
    with pytest.raises(InvalidArgument, match=message):
        load_config(tmp_path, environ={})


@pytest.mark.parametrize("text,words", [
    ('[replication]\nbroker = "amqp://x"\n', "broker"),
    ('[replication]\nxrootd = "maybe"\n', "xrootd"),
    ('[replication]\nprotocols = ["ftp"]\n', "protocols"),
    ('[replication]\nworkers = 0\n', "workers"),
    ('[replication]\ncache_bytes = -1\n', "cache_bytes"),
    ('[replication]\nxrootd_port = 70000\n', "xrootd_port"),
    ('[replication]\nretries = "many"\n', "retries"),
    ('[federation]\nmax_peers = -1\n', "max_peers"),
])
def test_bad_replication_config_is_refused(tmp_path, text, words):
    (tmp_path / "archipel.toml").write_text('[island]\nname = "x"\n' + text)
    with pytest.raises(InvalidArgument, match=words):
        load_config(tmp_path, environ={})


def test_replication_config_from_file_and_environment(tmp_path):
    (tmp_path / "archipel.toml").write_text('[island]\nname = "x"\n[replication]\nbroker = "redis://127.0.0.1:6379/0"\n')
    cfg = load_config(tmp_path, environ={"ARCHIPEL_REPLICATION_CACHE_BYTES": "1000"})
    assert cfg.replication.broker.startswith("redis://") and cfg.replication.cache_bytes == 1000


@pytest.mark.parametrize("text,words", [
    ("[security]\nanonymous = 'yes'\n", "anonymous"),
    ("[limits]\nconcurrent_queries = -1\n", "[limits] concurrent_queries"),
    ("[limits]\nresult_bytes = 'lots'\n", "expected int"),
    ("[island]\npeer_port = 70000\n", "peer_port"),
    ("[island]\nport = 7770\npeer_port = 7770\n", "peer_port"),
    ("[island]\ndata_port = -1\n", "data_port"),
    ("[island]\ndata_port = 'fast'\n", "expected int"),
    ("[island]\nport = 7770\ndata_port = 7770\n", "data_port 7770 is used by another port"),
    ("[island]\nhttp_port = 8000\ndata_port = 8000\n", "data_port 8000 is used by another port"),
    ("[island]\nhost = '10.0.0.1'\n[security]\nbenchmark_plaintext_port = 9000\n", "127.0.0.1 only"),
    ("[security]\nnope = 1\n", "unknown key"),
])
def test_bad_security_config_is_refused(tmp_path, text, words):
    island = "[island]\nname = 'a'\n"
    body = text.replace("[island]\n", island, 1) if text.startswith("[island]") else island + text
    (tmp_path / "archipel.toml").write_text(body)
    with pytest.raises(InvalidArgument) as err:
        load_config(tmp_path, environ={})
    assert words in str(err.value)


def test_security_config_defaults_and_paths(tmp_path):
    (tmp_path / "archipel.toml").write_text("[island]\nname = 'a'\nport = 7000\n[limits]\nsubscriptions = 3\n")
    cfg = load_config(tmp_path, environ={"ARCHIPEL_SECURITY_ANONYMOUS": "read-public"})
    assert cfg.security.anonymous == "read-public" and cfg.limits.subscriptions == 3
    assert cfg.peer_address == "127.0.0.1:7001" and cfg.security_path("key") == tmp_path / "island-key.pem"
