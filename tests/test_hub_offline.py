"""A hub id on a machine that cannot reach the Hub: the cache only, and the one-line error at once
(huggingface_hub alone retries the unreachable host for about 23 s per file)."""

import socket

import pytest

from lp_prune.config import ModelConfig
from lp_prune.models import loading


@pytest.fixture
def fresh_reachability():
    loading.hub_reachable.cache_clear()
    yield
    loading.hub_reachable.cache_clear()


def test_an_unresolvable_hub_host_reads_the_cache_only(monkeypatch, fresh_reachability):
    lookups = []

    def no_dns(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror("Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    config = ModelConfig(name="someone/not-a-model")
    assert loading.hub_kwargs(config, config.name)["local_files_only"] is True
    assert loading.hub_kwargs(config, config.name)["local_files_only"] is True
    assert len(lookups) == 1  # asked once per process
    with pytest.raises(loading.ModelLoadError, match="Hugging Face Hub is unreachable"):
        loading.load_tokenizer_and_config(config)


def test_a_local_folder_or_a_proxy_never_forces_the_cache(monkeypatch, tmp_path, fresh_reachability):
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: (_ for _ in ()).throw(socket.gaierror("no")))
    config = ModelConfig(name=str(tmp_path))
    assert "local_files_only" not in loading.hub_kwargs(config, tmp_path)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")  # the proxy resolves the Hub itself
    assert "local_files_only" not in loading.hub_kwargs(ModelConfig(name="org/model"), "org/model")
