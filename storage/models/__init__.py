"""SQLAlchemy 2 models of blockdrive's metadata, one module per area."""

from .base import Base
from .blocks import Block, Pack
from .changes import Change, ChangeHorizon
from .dav import DavLock, DavProp
from .loginflows import LoginFlow
from .nodes import FileVersion, Node, VersionBlock
from .ops import JobRun, Lock, RateLimit, Server, UploadChunk, UploadPin, UploadSession
from .reports import ReportSnapshot, ReportTier, ReportUser, TrafficDaily
from .sharing import Link, Share
from .users import ApiToken, User

__all__ = ["Base", "User", "ApiToken", "Node", "FileVersion", "VersionBlock", "Block", "Pack",
           "Share", "Link", "UploadSession", "UploadPin", "UploadChunk", "RateLimit", "JobRun", "Lock",
           "TrafficDaily", "ReportSnapshot", "ReportUser", "ReportTier", "DavProp", "DavLock",
           "LoginFlow", "Change", "ChangeHorizon", "Server"]
