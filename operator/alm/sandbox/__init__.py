"""The sandbox: an emulated Kubernetes API server and simulated controllers, in-process.

Used by ``alm sandbox`` (the whole operator without a cluster) and by the integration tests.
``ApiServerEmulator`` is kmock's emulator with real API-server semantics (see
:mod:`alm.sandbox.apiserver`); ``ApiServerThread`` serves it from a background thread;
``DeploymentController`` (:mod:`alm.sandbox.workloads`) makes Deployments become Available.
"""

from alm.sandbox.apiserver import ApiServerEmulator
from alm.sandbox.apiserverthread import ApiServerThread
from alm.sandbox.objectstore import ObjectStore
from alm.sandbox.resources import ResourceDef
from alm.sandbox.watches import StoreEvent
from alm.sandbox.workloads import DeploymentController

__all__ = [
    'ApiServerEmulator',
    'ApiServerThread',
    'DeploymentController',
    'ObjectStore',
    'ResourceDef',
    'StoreEvent',
]
