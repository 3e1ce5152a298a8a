"""Loss heads: one class per file, one yaml per loss in conf/loss (see docs/losses.md)."""

from src.losses.adaface import AdaFace
from src.losses.arcface import ArcFace
from src.losses.base import LossHead
from src.losses.center import CenterLoss
from src.losses.combined import CombinedMargin
from src.losses.contrastive import Contrastive
from src.losses.cosface import CosFace
from src.losses.curricularface import CurricularFace
from src.losses.elasticface import ElasticFace
from src.losses.lsoftmax import LSoftmax
from src.losses.magface import MagFace
from src.losses.modified_softmax import ModifiedSoftmax
from src.losses.normface import NormFace
from src.losses.reference_arcface import ReferenceArcFace
from src.losses.reference_sphereface import ReferenceSphereFace
from src.losses.softmax import Softmax
from src.losses.sphereface import SphereFace
from src.losses.sphereface2 import SphereFace2
from src.losses.sphereface_plus import SphereFacePlus
from src.losses.spherefacer import SphereFaceR
from src.losses.subcenter_arcface import SubCenterArcFace
from src.losses.triplet import Triplet
from src.losses.uniface import UniFace

__all__ = [
    "AdaFace",
    "ArcFace",
    "CenterLoss",
    "CombinedMargin",
    "Contrastive",
    "CosFace",
    "CurricularFace",
    "ElasticFace",
    "LSoftmax",
    "LossHead",
    "MagFace",
    "ModifiedSoftmax",
    "NormFace",
    "ReferenceArcFace",
    "ReferenceSphereFace",
    "Softmax",
    "SphereFace",
    "SphereFace2",
    "SphereFacePlus",
    "SphereFaceR",
    "SubCenterArcFace",
    "Triplet",
    "UniFace",
]
