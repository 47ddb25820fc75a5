"""The model layout: the one place for the facts the graph, the labels and the decoder share.

Everything that depends on how a RetinaFace graph is laid out reads it from here: the symbol
builders (:mod:`rcnn.symbol`), anchor labelling (:mod:`rcnn.io`), the loader
(:mod:`rcnn.core.loader`), the training metrics (:mod:`rcnn.core.metric`), the decoder and the
backends (:mod:`rcnn.inference`) and the exporters (:mod:`rcnn.deploy`). No MXNet here.

Facts (``net3``, the layout of both released models):

* feature strides, coarse to fine: :data:`FEATURE_STRIDES` = (32, 16, 8);
* ``A`` anchors per feature-map position = len(scales) x len(ratios) of a stride's anchor
  settings (:func:`anchors_per_position`), the same at every stride;
* per anchor: 2 class scores, :data:`BOX_LEN` = 4 box deltas (dx dy dw dh),
  :data:`LANDMARK_LEN` = 10 landmark deltas (x then y of :data:`NUM_LANDMARKS` = 5 points:
  left eye, right eye, nose, left and right mouth corner, image left/right as seen);
* a mirrored face's point ``p`` is the original's point ``FLIP_LANDMARK_ORDER[p]``;
* names: the image input :data:`DATA_NAME`; per stride the five training label inputs
  (:func:`label_names`), the three deploy outputs (:func:`deploy_output_names`), the six
  training outputs (:data:`TRAIN_OUTPUT_KINDS`) and the class-score convolution whose output
  size the loader reads (:func:`cls_score_name`);
* with ``CASCADE`` stages: per stage and stride the outputs of :func:`cascade_name`
  (``{kind}_stride{s}_cas{k}``, after the stride's first-stage outputs) and the padded face
  boxes input :data:`GT_BOXES_NAME`.
"""

__all__ = ['ModelLayout', 'BLUR_BOX_LEN', 'OCCLUSION_LANDMARK_LEN', 'FEATURE_STRIDES', 'NETWORK_STRIDES', 'DATA_NAME', 'NUM_CLASSES', 'BOX_LEN',
           'LANDMARK_LEN', 'NUM_LANDMARKS', 'FLIP_LANDMARK_ORDER', 'LABEL_KINDS',
           'LANDMARK_LABEL_KINDS', 'DEPLOY_OUTPUT_KINDS', 'TRAIN_OUTPUT_KINDS',
           'OUTPUTS_PER_STRIDE', 'DEPLOY_OUTPUTS_PER_STRIDE', 'MXNET_OUTPUT_SUFFIX',
           'anchors_per_position', 'strides_of', 'label_name', 'label_names',
           'deploy_output_names',
           'train_output_names', 'cls_score_name', 'head_names', 'train_output_index',
           'GT_BOXES_NAME', 'GT_BOX_COLUMNS', 'CASCADE_CLS_TRAIN_KINDS',
           'CASCADE_BBOX_TRAIN_KINDS', 'CASCADE_CLS_DEPLOY_KIND', 'CASCADE_BBOX_DEPLOY_KIND',
           'cascade_name']

#: strides of the feature maps every backbone provides, coarse to fine
FEATURE_STRIDES = (32, 16, 8)
#: the original detector's ``network`` names this project implements -> their strides
NETWORK_STRIDES = {'net3': FEATURE_STRIDES}
#: name of the image input of every graph
DATA_NAME = 'data'
#: background and face
NUM_CLASSES = 2
#: box regression values per anchor: dx, dy, log dw, log dh
BOX_LEN = 4
#: facial points per face
NUM_LANDMARKS = 5
#: landmark regression values per anchor: x, y of each point
LANDMARK_LEN = 2 * NUM_LANDMARKS
#: box values per anchor with ``USE_BLUR``: dx, dy, log dw, log dh, blur
BLUR_BOX_LEN = BOX_LEN + 1
#: landmark values per anchor with ``USE_OCCLUSION``: x, y, visibility of each point
OCCLUSION_LANDMARK_LEN = 3 * NUM_LANDMARKS
#: left eye <-> right eye, nose stays, left <-> right mouth corner
FLIP_LANDMARK_ORDER = (1, 0, 2, 4, 3)

#: training label inputs of one stride, in the loader's and the graph's order
LABEL_KINDS = ('label', 'bbox_target', 'bbox_weight', 'landmark_target', 'landmark_weight')
#: the two of them that exist only with landmarks
LANDMARK_LABEL_KINDS = ('landmark_target', 'landmark_weight')
_LABEL_PREFIX = 'face'

#: deploy outputs of one stride, in graph order: class probabilities (B, 2A, H, W; channels
#: A..2A-1 are the face probability of anchor a), box deltas (B, 4A, H, W; channel 4a + k),
#: landmark deltas (B, 10A, H, W; channel 10a + 2p + c)
DEPLOY_OUTPUT_KINDS = ('face_rpn_cls_prob_reshape', 'face_rpn_bbox_pred', 'face_rpn_landmark_pred')
DEPLOY_OUTPUTS_PER_STRIDE = len(DEPLOY_OUTPUT_KINDS)

#: training outputs of one stride, in graph order (output 6k + i of stride index k)
TRAIN_OUTPUT_KINDS = ('face_rpn_cls_prob', 'face_rpn_label', 'face_rpn_bbox_loss',
                      'face_rpn_bbox_weight', 'face_rpn_landmark_loss', 'face_rpn_landmark_weight')
OUTPUTS_PER_STRIDE = len(TRAIN_OUTPUT_KINDS)

#: the three 1x1 head convolutions of one stride (parameter names of the released graphs)
HEAD_KINDS = ('face_rpn_cls_score', 'face_rpn_bbox_pred', 'face_rpn_landmark_pred')
#: values per anchor of each head
HEAD_LENGTHS = (NUM_CLASSES, BOX_LEN, LANDMARK_LEN)
#: MXNet appends this to the name of a node's output
MXNET_OUTPUT_SUFFIX = '_output'

#: label input of a cascade training graph: the crop's faces, (B, M, 5) float32 rows
#: x1 y1 x2 y2 class, padded with rows of -1 (M = ``TRAIN.MAX_BBOX_PER_IMAGE``)
GT_BOXES_NAME = 'gt_boxes'
GT_BOX_COLUMNS = 5
#: training outputs of a cascade stage with a class head (``CASCADE_CLS_STRIDES``): class
#: probabilities (B, 2, A*H*W) and the stage's sampled labels (B, A*H*W)
CASCADE_CLS_TRAIN_KINDS = ('face_rpn_cls_prob', 'face_rpn_label')
#: training outputs of a cascade stage with a box head (``CASCADE_BBOX_STRIDES``): box loss and
#: box weights, both (B, box_len*A, H*W)
CASCADE_BBOX_TRAIN_KINDS = ('face_rpn_bbox_loss', 'face_rpn_bbox_weight')
#: deploy output of a cascade stage's class head: (B, 2A, H, W) probabilities
CASCADE_CLS_DEPLOY_KIND = 'face_rpn_cls_prob_reshape'
#: deploy output of a cascade stage's box head: (B, box_len*A, H, W) deltas
CASCADE_BBOX_DEPLOY_KIND = 'face_rpn_bbox_pred'


def _stride_name(kind, stride):
    return '%s_stride%d' % (kind, int(stride))


def cascade_name(kind, stride, stage):
    """Name of output ``kind`` of cascade stage ``stage`` (0-based) at ``stride``: the
    original's ``{kind}_stride{s}_cas{k}``.

    >>> cascade_name('face_rpn_bbox_pred', 16, 0)
    'face_rpn_bbox_pred_stride16_cas0'
    """
    return '%s_cas%d' % (_stride_name(kind, stride), int(stage))


def anchors_per_position(anchor_cfg):
    """Anchors per feature-map position of an ``RPN_ANCHOR_CFG`` (scales x ratios, the same
    at every stride); ValueError otherwise."""
    per_stride = {len(v['SCALES']) * len(v['RATIOS']) for v in anchor_cfg.values()}
    if len(per_stride) != 1:
        raise ValueError('every stride must have the same number of anchors, got %s'
                         % sorted(per_stride))
    return per_stride.pop()


def strides_of(anchor_cfg):
    """The strides of an ``RPN_ANCHOR_CFG`` (string keys), coarse to fine, as ints."""
    return tuple(sorted((int(k) for k in anchor_cfg), reverse=True))


def label_name(kind, stride, prefix=_LABEL_PREFIX):
    """Name of the training label input ``kind`` (one of :data:`LABEL_KINDS`) of ``stride``."""
    return _stride_name('%s_%s' % (prefix, kind), stride)


def label_names(strides=FEATURE_STRIDES, landmarks=True, prefix=_LABEL_PREFIX):
    """Training label input names in the loader's order: per stride ``label``, ``bbox_target``,
    ``bbox_weight`` (and ``landmark_target``, ``landmark_weight`` when ``landmarks``)."""
    kinds = [k for k in LABEL_KINDS if landmarks or k not in LANDMARK_LABEL_KINDS]
    return [label_name(kind, stride, prefix) for stride in strides for kind in kinds]


def deploy_output_names(strides=FEATURE_STRIDES):
    """Deploy output names (without :data:`MXNET_OUTPUT_SUFFIX`) in the order every backend
    returns them: the three kinds of ``strides[0]``, then of ``strides[1]``, ...

    >>> deploy_output_names((32, 16, 8))[:2]
    ['face_rpn_cls_prob_reshape_stride32', 'face_rpn_bbox_pred_stride32']
    """
    return [_stride_name(kind, stride) for stride in strides for kind in DEPLOY_OUTPUT_KINDS]


def train_output_names(strides=FEATURE_STRIDES):
    """The training graph's output node names, in output order (6 per stride)."""
    return [_stride_name(kind, stride) for stride in strides for kind in TRAIN_OUTPUT_KINDS]


def train_output_index(stride_index, kind):
    """Index of output ``kind`` (one of :data:`TRAIN_OUTPUT_KINDS`) of the ``stride_index``-th
    stride in the training graph's outputs."""
    return OUTPUTS_PER_STRIDE * int(stride_index) + TRAIN_OUTPUT_KINDS.index(kind)


def head_names(stride):
    """The class, box and landmark head convolution names of one stride."""
    return tuple(_stride_name(kind, stride) for kind in HEAD_KINDS)


def cls_score_name(stride, output=True):
    """The class-score convolution of ``stride`` (its output when ``output``): the loader reads
    each stride's feature-map size from it."""
    name = _stride_name(HEAD_KINDS[0], stride)
    return name + MXNET_OUTPUT_SUFFIX if output else name


class ModelLayout(object):
    """The layout of one member of the model family, derived from a config.

    The module-level names above describe ``net3`` (the released models); a config with
    other switches (``RPN_ANCHOR_CFG``, ``DENSE_ANCHOR``, ``USE_BLUR``, ``USE_OCCLUSION``,
    ``FACE_LANDMARK``, ``CASCADE``) has another layout, and every part that depends on it
    (graphs, labels, loader, metrics, decoder, exporters) asks a ``ModelLayout``.

    Attributes:
        strides: feature strides, coarse to fine (``(32, 16, 8)``).
        num_anchors: anchors per feature-map position, the same at every stride (``A``).
        box_len: box values per anchor: :data:`BOX_LEN` or :data:`BLUR_BOX_LEN`.
        landmark_len: landmark values per anchor: 0 (no landmark head), :data:`LANDMARK_LEN`
            or :data:`OCCLUSION_LANDMARK_LEN`.
        cascade: cascade stages after the first heads (0: none).
        cascade_cls_strides: strides whose cascade stages have a class head
            (``CASCADE_CLS_STRIDES`` of the layout's strides; every stride by default; empty
            without cascade).
        cascade_bbox_strides: likewise for the box head (``CASCADE_BBOX_STRIDES``).
    """
    __slots__ = ('strides', 'num_anchors', 'box_len', 'landmark_len', 'cascade',
                 'cascade_cls_strides', 'cascade_bbox_strides')

    def __init__(self, strides=FEATURE_STRIDES, num_anchors=2, box_len=BOX_LEN,
                 landmark_len=LANDMARK_LEN, cascade=0, cascade_cls_strides=None,
                 cascade_bbox_strides=None):
        strides = tuple(int(s) for s in strides)
        if not strides or list(strides) != sorted(set(strides), reverse=True):
            raise ValueError('strides must be distinct and listed coarse to fine, got %s'
                             % list(strides))
        if box_len not in (BOX_LEN, BLUR_BOX_LEN):
            raise ValueError('box_len must be %d or %d, got %r' % (BOX_LEN, BLUR_BOX_LEN, box_len))
        if landmark_len not in (0, LANDMARK_LEN, OCCLUSION_LANDMARK_LEN):
            raise ValueError('landmark_len must be 0, %d or %d, got %r'
                             % (LANDMARK_LEN, OCCLUSION_LANDMARK_LEN, landmark_len))
        if int(num_anchors) < 1 or int(cascade) < 0:
            raise ValueError('num_anchors must be >= 1 and cascade >= 0, got %r, %r'
                             % (num_anchors, cascade))
        object.__setattr__(self, 'strides', strides)
        object.__setattr__(self, 'num_anchors', int(num_anchors))
        object.__setattr__(self, 'box_len', int(box_len))
        object.__setattr__(self, 'landmark_len', int(landmark_len))
        object.__setattr__(self, 'cascade', int(cascade))
        for name, chosen in (('cascade_cls_strides', cascade_cls_strides),
                             ('cascade_bbox_strides', cascade_bbox_strides)):
            chosen = strides if chosen is None else tuple(int(s) for s in chosen)
            object.__setattr__(self, name, tuple(s for s in strides if s in chosen)
                               if self.cascade else ())

    def __setattr__(self, name, value):
        raise AttributeError('a ModelLayout cannot be changed')

    @classmethod
    def from_config(cls, cfg):
        """The layout of a (derived) config: ``RPN_ANCHOR_CFG`` (strides, scales x ratios),
        ``DENSE_ANCHOR`` (x2), ``USE_BLUR``, ``FACE_LANDMARK``, ``USE_OCCLUSION``,
        ``CASCADE``, ``CASCADE_CLS_STRIDES``, ``CASCADE_BBOX_STRIDES``."""
        per_position = anchors_per_position(cfg.RPN_ANCHOR_CFG)
        if cfg.DENSE_ANCHOR:
            per_position *= 2
        landmark_len = 0
        if cfg.FACE_LANDMARK:
            landmark_len = OCCLUSION_LANDMARK_LEN if cfg.USE_OCCLUSION else LANDMARK_LEN
        return cls(strides_of(cfg.RPN_ANCHOR_CFG), per_position,
                   BLUR_BOX_LEN if cfg.USE_BLUR else BOX_LEN, landmark_len,
                   int(cfg.CASCADE), cfg.CASCADE_CLS_STRIDES, cfg.CASCADE_BBOX_STRIDES)

    # ---- facts of the layout ----
    @property
    def landmarks(self):
        """Whether the graph has landmark heads (and the loader landmark labels)."""
        return self.landmark_len > 0

    @property
    def blur(self):
        """Whether the box head has the blur value (the 5th of each anchor)."""
        return self.box_len == BLUR_BOX_LEN

    @property
    def occlusion(self):
        """Whether the landmark head has a visibility value per point."""
        return self.landmark_len == OCCLUSION_LANDMARK_LEN

    @property
    def landmark_point_len(self):
        """Values per landmark point: 2 (x, y) or 3 (x, y, visibility); 0 without landmarks."""
        return self.landmark_len // NUM_LANDMARKS

    @property
    def head_lengths(self):
        """Values per anchor of each head of one stride: (2, box_len[, landmark_len])."""
        return (NUM_CLASSES, self.box_len) + ((self.landmark_len,) if self.landmarks else ())

    def head_names(self, stride):
        """The class, box (and landmark) head convolutions of one stride."""
        return head_names(stride)[:len(self.head_lengths)]

    # ---- names ----
    @property
    def label_kinds(self):
        """Training label inputs of one stride, in the loader's and the graph's order."""
        return tuple(k for k in LABEL_KINDS if self.landmarks or k not in LANDMARK_LABEL_KINDS)

    def label_names(self, prefix=_LABEL_PREFIX):
        """Every training label input name: per stride (coarse to fine) :attr:`label_kinds`,
        then :data:`GT_BOXES_NAME` when the layout has cascade stages."""
        names = label_names(self.strides, self.landmarks, prefix)
        return names + [GT_BOXES_NAME] if self.cascade else names

    def cascade_kinds(self, stride, cls_kinds, bbox_kinds):
        """``[(kind, stage)]`` of the cascade outputs of one stride, in graph order: per stage,
        ``cls_kinds`` when the stride has a cascade class head, then ``bbox_kinds`` when it has
        a cascade box head (the original's ``get_out`` and ``save_model``)."""
        stride = int(stride)
        per_stage = ((cls_kinds if stride in self.cascade_cls_strides else ()) +
                     (bbox_kinds if stride in self.cascade_bbox_strides else ()))
        return [(kind, stage) for stage in range(self.cascade) for kind in per_stage]

    @property
    def deploy_output_kinds(self):
        """First-stage deploy outputs of one stride: class probabilities, box deltas
        [, landmark deltas]."""
        return DEPLOY_OUTPUT_KINDS[:2 + int(self.landmarks)]

    def stride_deploy_output_names(self, stride):
        """Deploy output names of one stride: :attr:`deploy_output_kinds`, then per cascade
        stage its class probabilities and / or box deltas (:meth:`cascade_kinds`)."""
        return ([_stride_name(kind, stride) for kind in self.deploy_output_kinds] +
                [cascade_name(kind, stride, stage) for kind, stage in self.cascade_kinds(
                    stride, (CASCADE_CLS_DEPLOY_KIND,), (CASCADE_BBOX_DEPLOY_KIND,))])

    def deploy_output_names(self):
        """Deploy output names in graph order (:meth:`stride_deploy_output_names` per
        stride, coarse to fine)."""
        return [name for stride in self.strides
                for name in self.stride_deploy_output_names(stride)]

    @property
    def train_output_kinds(self):
        """First-stage training outputs of one stride, in graph order."""
        return TRAIN_OUTPUT_KINDS[:4 + 2 * int(self.landmarks)]

    def cascade_train_output_names(self, stride):
        """Training outputs the cascade stages add to one stride: per stage
        :data:`CASCADE_CLS_TRAIN_KINDS` and / or :data:`CASCADE_BBOX_TRAIN_KINDS`
        (:meth:`cascade_kinds`)."""
        return [cascade_name(kind, stride, stage) for kind, stage in self.cascade_kinds(
            stride, CASCADE_CLS_TRAIN_KINDS, CASCADE_BBOX_TRAIN_KINDS)]

    def train_output_names(self):
        """The training graph's output node names, in output order: the first stage's
        (:attr:`train_output_kinds` per stride), then the cascade's
        (:meth:`cascade_train_output_names` per stride). The original interleaves each stride's
        cascade outputs with its own; after all first-stage outputs, a first-stage output has
        the same index with and without cascade (metrics, the NaN guard)."""
        first = [_stride_name(kind, stride) for stride in self.strides
                 for kind in self.train_output_kinds]
        return first + [name for stride in self.strides
                        for name in self.cascade_train_output_names(stride)]

    def train_output_index(self, stride_index, kind, stage=None):
        """Index of training output ``kind`` of the ``stride_index``-th stride (of cascade
        stage ``stage`` when given) in the training graph's outputs."""
        stride = self.strides[int(stride_index)]
        name = (_stride_name(kind, stride) if stage is None
                else cascade_name(kind, stride, stage))
        return self.train_output_names().index(name)

    # ---- value semantics ----
    def _key(self):
        return (self.strides, self.num_anchors, self.box_len, self.landmark_len, self.cascade,
                self.cascade_cls_strides, self.cascade_bbox_strides)

    def __eq__(self, other):
        return isinstance(other, ModelLayout) and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())

    def __reduce__(self):
        return ModelLayout, self._key()

    def __repr__(self):
        text = ('ModelLayout(strides=%s, num_anchors=%d, box_len=%d, landmark_len=%d, '
                'cascade=%d' % ((list(self.strides),) + self._key()[1:5]))
        if self.cascade:
            text += ', cascade_cls_strides=%s, cascade_bbox_strides=%s' % (
                list(self.cascade_cls_strides), list(self.cascade_bbox_strides))
        return text + ')'
