"""People in an RGB-D frame: 2D detections from pretrained models, lifted to 3D boxes with depth.

Why three detectors: mediapipe's pose model finds one person (the most prominent) with body
landmarks, its face detector finds every frontal face but no body, and OpenCV's HOG people
detector finds several upright people at once but also fires on clutter. Their boxes are merged
(the same person seen by two detectors counts once, with a noisy-OR score) and then lifted to a
camera-frame Box3D with the depth image: only the pixels near the person's own depth (sampled at
the torso landmarks, the face, or the box centre) count, so the wall behind a person and the
floor at their feet do not inflate the box. A lifted box must have a person's size, which also
removes most HOG false alarms.

Weights: mediapipe 0.10.21's wheel carries pose_detection.tflite, pose_landmark_full.tflite and
the face detectors (model_complexity=1 only: the lite and heavy pose models would be downloaded,
which the project never does); OpenCV 4's wheel carries the HOG people SVM.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np

from jaeger_ros.core.geometry import Box3D, Intrinsics, backproject, project

PERSON = "person"
TORSO_LANDMARKS = (11, 12, 23, 24)   # shoulders and hips: where the person's depth is sampled
HEAD_LANDMARKS = tuple(range(0, 11))
MIN_VISIBILITY = 0.5
DEPTH_BAND_M = 0.45        # pixels this far from the person's depth belong to the person
MIN_THICKNESS_M = 0.3      # only the front is seen: a body is at least this deep
HEIGHT_RANGE_M = (0.35, 2.3)   # a seated person's visible part ... a tall standing one
WIDTH_RANGE_M = (0.15, 1.6)
MAX_DEPTH_M = 8.0
MIN_PIXELS = 30
MERGE_IOU = 0.4


@dataclass(frozen=True)
class PersonBox2D:
    """A person in image pixels: box (x0, y0, x1, y1), the region whose depth is the person's
    (core, same format), a score in [0, 1] and the detectors that found it."""

    box: tuple[float, float, float, float]
    core: tuple[float, float, float, float]
    score: float
    source: str

    def scaled(self, sx: float, sy: float) -> "PersonBox2D":
        f = lambda b: (b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy)  # noqa: E731
        return replace(self, box=f(self.box), core=f(self.core))


def iou_2d(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _as_rgb8(rgb: np.ndarray) -> np.ndarray:
    img = np.asarray(rgb)
    if img.ndim != 3 or img.shape[2] not in (3, 4) or min(img.shape[:2]) < 16:
        raise ValueError(f"rgb must be an (H, W, 3) image of at least 16x16, got shape {img.shape}")
    img = img[..., :3]
    if img.dtype != np.uint8:
        scale = 255.0 if np.nanmax(img) <= 1.0 else 1.0
        img = np.clip(np.nan_to_num(img.astype(np.float32) * scale), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(img)


def _face_person(face: tuple[float, float, float, float], width: int, height: int) -> tuple[float, ...]:
    """The body box implied by a face: 2.6 face widths wide, from above the hair down 7.5 face
    heights (a standing adult is about 7.5 heads tall), clipped to the image."""
    x0, y0, x1, y1 = face
    fw, fh, cx = x1 - x0, y1 - y0, (x0 + x1) / 2
    return (max(0.0, cx - 1.3 * fw), max(0.0, y0 - 0.35 * fh), min(float(width), cx + 1.3 * fw),
            min(float(height), y0 + 7.5 * fh))


class PersonDetector:
    """mediapipe pose + face and OpenCV HOG, merged. `video=True` lets the pose model track the
    person between frames (it re-detects only when lost), the live setting; `hog_width` is the
    width HOG runs at (people shorter than 128 px there are missed; smaller is faster)."""

    def __init__(self, use_pose: bool = True, use_face: bool = True, use_hog: bool = True,
                 video: bool = False, face_threshold: float = 0.5, hog_threshold: float = 0.3,
                 hog_width: int = 640) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logs at info level otherwise
        self._pose = self._face = self._hog = None
        if use_pose or use_face:
            import mediapipe as mp
            if use_pose:
                self._pose = mp.solutions.pose.Pose(static_image_mode=not video, model_complexity=1,
                                                    min_detection_confidence=0.5)
            if use_face:
                self._face = mp.solutions.face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=face_threshold)
        if use_hog:
            import cv2
            self._cv2 = cv2
            self._hog = cv2.HOGDescriptor()
            self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.hog_threshold = hog_threshold
        self.hog_width = hog_width

    def _from_pose(self, img: np.ndarray) -> list[PersonBox2D]:
        result = self._pose.process(img)
        if result.pose_landmarks is None:
            return []
        h, w = img.shape[:2]
        lm = result.pose_landmarks.landmark
        xy = np.array([[p.x * w, p.y * h] for p in lm])
        vis = np.array([p.visibility for p in lm])
        seen = vis >= MIN_VISIBILITY
        if seen.sum() < 4:
            return []
        x0, y0 = xy[seen].min(axis=0)
        x1, y1 = xy[seen].max(axis=0)
        # landmarks are joints: the crown of the head lies above the eyes by about the
        # eyes-to-shoulders distance x 0.6, and limbs have flesh around them
        shoulder_y = xy[[11, 12], 1].mean()
        y0 -= 0.6 * max(shoulder_y - xy[HEAD_LANDMARKS, 1].min(), 0.0)
        pad = 0.1 * (x1 - x0)
        box = (max(0.0, x0 - pad), max(0.0, y0), min(float(w), x1 + pad), min(float(h), y1 + 0.03 * (y1 - y0)))
        torso = [i for i in TORSO_LANDMARKS if seen[i]] or [i for i in HEAD_LANDMARKS if seen[i]]
        tx, ty = xy[torso].T
        r = 0.04 * (box[2] - box[0]) + 2
        core = (max(0.0, tx.min() - r), max(0.0, ty.min() - r), min(float(w), tx.max() + r), min(float(h), ty.max() + r))
        score = float(vis[list(HEAD_LANDMARKS) + [11, 12]].mean())
        return [PersonBox2D(tuple(map(float, box)), tuple(map(float, core)), score, "pose")]

    def _from_faces(self, img: np.ndarray) -> list[PersonBox2D]:
        result = self._face.process(img)
        h, w = img.shape[:2]
        found = []
        for det in result.detections or []:
            rb = det.location_data.relative_bounding_box
            face = (max(0.0, rb.xmin * w), max(0.0, rb.ymin * h), min(float(w), (rb.xmin + rb.width) * w),
                    min(float(h), (rb.ymin + rb.height) * h))
            if face[2] <= face[0] or face[3] <= face[1]:
                continue
            found.append(PersonBox2D(_face_person(face, w, h), face, float(det.score[0]), "face"))
        return found

    def _from_hog(self, img: np.ndarray) -> list[PersonBox2D]:
        cv2 = self._cv2
        h, w = img.shape[:2]
        s = min(1.0, self.hog_width / w)
        gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        if s < 1.0:
            gray = cv2.resize(gray, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        rects, weights = self._hog.detectMultiScale(gray, winStride=(8, 8), padding=(8, 8), scale=1.05)
        found = []
        for (x, y, bw, bh), weight in zip(np.asarray(rects).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            if weight < self.hog_threshold:
                continue
            # the 64x128 window has a margin of ~1/8 around the person
            box = ((x + bw / 8) / s, (y + bh / 16) / s, (x + bw * 7 / 8) / s, (y + bh * 15 / 16) / s)
            core = ((x + bw * 3 / 8) / s, (y + bh * 0.2) / s, (x + bw * 5 / 8) / s, (y + bh * 0.55) / s)
            found.append(PersonBox2D(box, core, float(1.0 - np.exp(-weight)), "hog"))
        return found

    def detect_2d(self, rgb: np.ndarray) -> list[PersonBox2D]:
        """People in the image, best first, each detected person once."""
        img = _as_rgb8(rgb)
        found: list[PersonBox2D] = []
        if self._pose is not None:
            found += self._from_pose(img)
        if self._hog is not None:
            found += sorted(self._from_hog(img), key=lambda b: -b.score)
        if self._face is not None:
            found += self._from_faces(img)
        return merge_people(found)

    def detect(self, rgb: np.ndarray, depth: np.ndarray, intrinsics: Intrinsics) -> list[Box3D]:
        """People as camera-frame boxes (label "person", score in [0, 1]); detections whose
        depth gives no person-sized box are dropped."""
        img = _as_rgb8(rgb)
        d = np.asarray(depth, dtype=np.float32)
        if d.shape != (intrinsics.height, intrinsics.width):
            raise ValueError(f"depth shape {d.shape} does not match intrinsics {intrinsics.height}x{intrinsics.width}")
        sx, sy = d.shape[1] / img.shape[1], d.shape[0] / img.shape[0]
        boxes = []
        for person in self.detect_2d(img):
            box = lift_to_3d(person.scaled(sx, sy), d, intrinsics)
            if box is not None:
                boxes.append(box)
        return boxes

    def close(self) -> None:
        for model in (self._pose, self._face):
            if model is not None:
                model.close()


def merge_people(found: list[PersonBox2D]) -> list[PersonBox2D]:
    """One box per person: a detection overlapping an earlier one (IoU > MERGE_IOU), or a face
    lying in the upper half of an earlier body box, is the same person; its score joins by
    noisy-OR. Earlier boxes win the geometry (pose, then HOG, then faces)."""
    kept: list[PersonBox2D] = []
    for det in found:
        for i, k in enumerate(kept):
            same = iou_2d(det.box, k.box) > MERGE_IOU
            if det.source == "face" and not same:
                fx, fy = (det.core[0] + det.core[2]) / 2, (det.core[1] + det.core[3]) / 2
                same = k.box[0] <= fx <= k.box[2] and k.box[1] <= fy <= (k.box[1] + k.box[3]) / 2
            if same:
                sources = k.source if det.source in k.source.split("+") else f"{k.source}+{det.source}"
                kept[i] = replace(k, score=1.0 - (1.0 - k.score) * (1.0 - det.score), source=sources)
                break
        else:
            kept.append(det)
    return sorted(kept, key=lambda b: -b.score)


def lift_to_3d(person: PersonBox2D, depth: np.ndarray, intrinsics: Intrinsics) -> Box3D | None:
    """Camera-frame box of the pixels in `person.box` within DEPTH_BAND_M of the median depth of
    its core; None when too few pixels are valid or the result is not person-sized."""
    h, w = depth.shape
    def window(b: tuple[float, ...]) -> tuple[slice, slice]:
        x0, y0 = int(np.clip(np.floor(b[0]), 0, w - 1)), int(np.clip(np.floor(b[1]), 0, h - 1))
        x1, y1 = int(np.clip(np.ceil(b[2]), x0 + 1, w)), int(np.clip(np.ceil(b[3]), y0 + 1, h))
        return slice(y0, y1), slice(x0, x1)

    core = depth[window(person.core)]
    core = core[np.isfinite(core) & (core > 0) & (core < MAX_DEPTH_M)]
    if core.size < 3:
        return None
    ref = float(np.median(core))
    rows, cols = window(person.box)
    points = backproject(depth, intrinsics)[rows, cols].reshape(-1, 3)
    d = -points[:, 2]
    points = points[np.isfinite(d) & (np.abs(d - ref) < DEPTH_BAND_M)]
    if len(points) < MIN_PIXELS:
        return None
    lo = np.percentile(points, 2, axis=0)
    hi = np.percentile(points, 98, axis=0)
    front = -hi[2]                       # nearest seen surface (z is backward)
    thickness = max(hi[2] - lo[2], MIN_THICKNESS_M)
    size = np.array([hi[0] - lo[0], hi[1] - lo[1], thickness])
    if not (HEIGHT_RANGE_M[0] <= size[1] <= HEIGHT_RANGE_M[1] and WIDTH_RANGE_M[0] <= size[0] <= WIDTH_RANGE_M[1]):
        return None
    center = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, -(front + thickness / 2)])
    return Box3D(center, size, label=PERSON, score=float(np.clip(person.score, 0.0, 1.0)),
                 extra={"source": person.source})


class CropPoseCheck:
    """Is a depth blob a person? mediapipe pose on the blob's crop, a square 1.6x its larger
    side scaled to CROP_PX: a seated person 2-4 m away is only 60-100 px tall at 640x480, too
    small for pose on the whole frame, but found on the crop. With the depth image and
    `isolate`, the crop shows the blob alone: pixels off its image box or off its depth range (padded by
    TORSO_PAD_M) are grey, as is the part of the square beyond the image's edges (padded, not
    stretched). Pose finds the most prominent person of a crop, and without this a nearer
    person beside or in front of the blob was the one found, whose torso is not on the blob
    (most misses of people in live mesh scenes). The score is the mean
    visibility of the head and shoulder landmarks, 0 when no pose or when the pose's torso
    (the mean of its visible shoulders and hips) is not on the blob: outside its image box or,
    with the depth image, its 3D point outside the box (padded by TORSO_PAD_M), so a person
    beside or behind a loudspeaker does not make the loudspeaker a person, or when its nose is
    not above its shoulders by MIN_NOSE_ABOVE_SHOULDERS_M (pose hallucinated on a lone basket
    on grey)."""

    TORSO_PAD_M = 0.15
    CROP_PX = 256
    GREY = 128
    SIDE_PAD = 0.1     # of the blob's image width: arms held out reach past its depth footprint
    MIN_NOSE_ABOVE_SHOULDERS_M = 0.08

    def __init__(self) -> None:
        os.environ.setdefault("GLOG_minloglevel", "2")
        import cv2
        import mediapipe as mp
        self._cv2 = cv2
        self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1, min_detection_confidence=0.5)

    def __call__(self, rgb: np.ndarray, box: Box3D, intrinsics: Intrinsics, depth: np.ndarray | None = None,
                 isolate: bool = True) -> float:
        img = _as_rgb8(rgb)
        u, v, front = project(box.corners(), intrinsics)
        if not front.all():
            return 0.0
        h, w = img.shape[:2]
        sx, sy = w / intrinsics.width, h / intrinsics.height
        bx0, bx1, by0, by1 = u.min() * sx, u.max() * sx, v.min() * sy, v.max() * sy
        cx, cy = (bx0 + bx1) / 2, (by0 + by1) / 2
        side = max(int(round(1.6 * max(bx1 - bx0, by1 - by0))), 2)
        ox, oy = int(round(cx - side / 2)), int(round(cy - side / 2))   # the square's corner in the image
        x0, y0, x1, y1 = max(ox, 0), max(oy, 0), min(ox + side, w), min(oy + side, h)
        if x1 <= x0 or y1 <= y0:
            return 0.0
        patch = img[y0:y1, x0:x1].copy()
        if depth is not None and isolate:
            patch[~self._blob_mask(depth, box, intrinsics, (x0, y0, x1, y1), (bx0, bx1), (sx, sy))] = self.GREY
        square = np.full((side, side, 3), self.GREY, np.uint8)
        square[y0 - oy:y1 - oy, x0 - ox:x1 - ox] = patch
        result = self._pose.process(self._cv2.resize(square, (self.CROP_PX, self.CROP_PX)))
        if result.pose_landmarks is None:
            return 0.0
        lm = result.pose_landmarks.landmark
        torso = [lm[i] for i in TORSO_LANDMARKS if lm[i].visibility >= MIN_VISIBILITY] or [lm[i] for i in (11, 12)]
        tx = ox + np.mean([p.x for p in torso]) * side
        ty = oy + np.mean([p.y for p in torso]) * side
        if not (bx0 <= tx <= bx1 and by0 <= ty <= by1):
            return 0.0
        if depth is not None and not self._on_box(depth, tx / sx, ty / sy, box, intrinsics):
            return 0.0
        # upright: the nose stands above the shoulders' line (a person's by 0.09-0.22 m in live
        # mesh scenes; poses found on baskets had it 0.06 m above or below)
        nose_m = ((lm[11].y + lm[12].y) / 2 - lm[0].y) * side / sy * -box.center[2] / intrinsics.fy
        if nose_m < self.MIN_NOSE_ABOVE_SHOULDERS_M:
            return 0.0
        return float(np.mean([p.visibility for p in lm][:13]))

    def _blob_mask(self, depth: np.ndarray, box: Box3D, intrinsics: Intrinsics, window: tuple[int, int, int, int],
                   columns: tuple[float, float], scale: tuple[float, float]) -> np.ndarray:
        """Pixels of the image window (x0, y0, x1, y1) that may show the blob: within its image
        columns (padded by SIDE_PAD) and its depth range (padded by TORSO_PAD_M); depth holes
        count as the blob's (a real sensor loses dark cloth)."""
        x0, y0, x1, y1 = window
        sx, sy = scale
        dh, dw = depth.shape
        rows = np.clip((np.arange(y0, y1) / sy).astype(int), 0, dh - 1)
        cols = np.clip((np.arange(x0, x1) / sx).astype(int), 0, dw - 1)
        d = np.asarray(depth, dtype=np.float32)[np.ix_(rows, cols)]
        near, far = -box.max[2] - self.TORSO_PAD_M, -box.min[2] + self.TORSO_PAD_M
        on = ~(np.isfinite(d) & (d > 0)) | ((d >= near) & (d <= far))
        pad = self.SIDE_PAD * (columns[1] - columns[0])
        x = np.arange(x0, x1)
        return on & ((x >= columns[0] - pad) & (x <= columns[1] + pad))[None, :]

    def _on_box(self, depth: np.ndarray, u: float, v: float, box: Box3D, intrinsics: Intrinsics) -> bool:
        """Whether the depth around pixel (u, v) (median of a 7x7 window) is a point inside `box`."""
        h, w = depth.shape
        iu, iv = int(np.clip(u, 0, w - 1)), int(np.clip(v, 0, h - 1))
        window = depth[max(iv - 3, 0):iv + 4, max(iu - 3, 0):iu + 4]
        window = window[np.isfinite(window) & (window > 0)]
        if not window.size:
            return True   # a hole: the image box check alone
        d = float(np.median(window))
        point = np.array([(u - intrinsics.cx) * d / intrinsics.fx, -(v - intrinsics.cy) * d / intrinsics.fy, -d])
        return bool(np.all(point >= box.min - self.TORSO_PAD_M) and np.all(point <= box.max + self.TORSO_PAD_M))

    def close(self) -> None:
        self._pose.close()
