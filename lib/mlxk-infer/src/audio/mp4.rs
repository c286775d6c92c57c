//! The one thing symphonia 0.5 leaves out of an MP4 that ffmpeg applies: the edit list's start.
//!
//! AAC encoders put priming frames (1024 or 2112 samples) before the audio and say so in the
//! sound track's edit list (`moov/trak/edts/elst`, `media_time`). ffmpeg drops them; symphonia
//! keeps them, which shifts every sample by ~23 ms. Like ffmpeg 5.1 (the decoder Whisper's
//! reference reads through), only the start is applied: the last frame's padding stays.

/// Where the first sound track's first real edit starts, in the track's time scale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StartEdit {
    media_time: u64,
    scale: u64,
}

impl StartEdit {
    /// The frames at `rate` that the edit skips.
    pub fn frames_at(&self, rate: u32) -> u64 {
        self.media_time.saturating_mul(rate as u64) / self.scale
    }
}

/// The first sound track's first real edit; `None` when the file is not MP4, has no such edit,
/// or its boxes are malformed.
pub fn start_edit(b: &[u8]) -> Option<StartEdit> {
    if b.len() < 12 || &b[4..8] != b"ftyp" {
        return None;
    }
    let moov = children(b).find(|(t, _)| t == b"moov")?.1;
    for (t, trak) in children(moov) {
        if &t != b"trak" {
            continue;
        }
        let Some((_, mdia)) = children(trak).find(|(t, _)| t == b"mdia") else {
            continue;
        };
        let sound = children(mdia)
            .find(|(t, _)| t == b"hdlr")
            .is_some_and(|(_, h)| h.get(8..12) == Some(b"soun"));
        if !sound {
            continue;
        }
        // media_time counts in the track's time scale (mdhd), usually its sample rate.
        let mdhd = children(mdia).find(|(t, _)| t == b"mdhd")?.1;
        let at = if *mdhd.first()? == 1 { 20 } else { 12 };
        let scale = u32::from_be_bytes(mdhd.get(at..at + 4)?.try_into().ok()?) as u64;
        if scale == 0 {
            return None;
        }
        let (_, edts) = children(trak).find(|(t, _)| t == b"edts")?;
        let elst = children(edts).find(|(t, _)| t == b"elst")?.1;
        let version = *elst.first()?;
        let count = u32::from_be_bytes(elst.get(4..8)?.try_into().ok()?) as usize;
        let entry = if version == 1 { 20 } else { 12 };
        for k in 0..count {
            let e = elst.get(8 + k * entry..8 + (k + 1) * entry)?;
            // An empty edit (media_time −1) delays the track; the first real edit starts it.
            let media_time = if version == 1 {
                i64::from_be_bytes(e[8..16].try_into().ok()?)
            } else {
                i32::from_be_bytes(e[4..8].try_into().ok()?) as i64
            };
            if media_time >= 0 {
                return Some(StartEdit {
                    media_time: media_time as u64,
                    scale,
                });
            }
        }
        return None;
    }
    None
}

/// The boxes directly inside `b`: (type, payload).
fn children(b: &[u8]) -> impl Iterator<Item = ([u8; 4], &[u8])> {
    let mut off = 0usize;
    std::iter::from_fn(move || {
        let head = b.get(off..off + 8)?;
        let size = u32::from_be_bytes(head[..4].try_into().ok()?) as u64;
        let kind: [u8; 4] = head[4..8].try_into().ok()?;
        let (hdr, size) = match size {
            1 => (
                16,
                u64::from_be_bytes(b.get(off + 8..off + 16)?.try_into().ok()?),
            ),
            0 => (8, (b.len() - off) as u64),
            s => (8, s),
        };
        let end = off.checked_add(usize::try_from(size).ok()?)?;
        if size < hdr as u64 || end > b.len() {
            return None;
        }
        let body = &b[off + hdr..end];
        off = end;
        Some((kind, body))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn priming_frames(b: &[u8], rate: u32) -> Option<u64> {
        start_edit(b).map(|e| e.frames_at(rate))
    }

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(kind);
        v.extend_from_slice(body);
        v
    }

    fn movie(handler: &[u8; 4], elst: &[u8]) -> Vec<u8> {
        let hdlr = bx(b"hdlr", &[&[0u8; 8][..], handler, &[0u8; 12]].concat());
        // Version 0: flags, creation, modification, then the time scale (22 050 Hz).
        let mdhd = bx(
            b"mdhd",
            &[&[0u8; 12][..], &22_050u32.to_be_bytes(), &[0u8; 8]].concat(),
        );
        let trak = bx(
            b"trak",
            &[
                bx(b"edts", &bx(b"elst", elst)),
                bx(b"mdia", &[mdhd, hdlr].concat()),
            ]
            .concat(),
        );
        [bx(b"ftyp", b"M4A \0\0\0\0"), bx(b"moov", &trak)].concat()
    }

    /// A version-0 `elst` body with one edit: 4884 ms from media time 1024 at rate 1.
    fn one_edit_at_1024() -> Vec<u8> {
        [
            &[0u8, 0, 0, 0, 0, 0, 0, 1][..],
            &[0, 0, 0x13, 0x14, 0, 0, 4, 0, 0, 1, 0, 0],
        ]
        .concat()
    }

    #[test]
    fn the_first_real_edit_of_the_sound_track_is_read() {
        let v0 = one_edit_at_1024();
        assert_eq!(priming_frames(&movie(b"soun", &v0), 22_050), Some(1024));
        // An empty edit first, then the real one (version 1, 64-bit fields).
        let mut v1 = vec![1u8, 0, 0, 0, 0, 0, 0, 2];
        for media_time in [-1i64, 2112] {
            v1.extend_from_slice(&10u64.to_be_bytes());
            v1.extend_from_slice(&media_time.to_be_bytes());
            v1.extend_from_slice(&[0, 1, 0, 0]);
        }
        assert_eq!(priming_frames(&movie(b"soun", &v1), 44_100), Some(4224));
    }

    #[test]
    fn other_files_and_broken_boxes_have_none() {
        let v0 = one_edit_at_1024();
        assert_eq!(priming_frames(&movie(b"vide", &v0), 22_050), None);
        assert_eq!(priming_frames(b"RIFF\0\0\0\0WAVEfmt ", 16_000), None);
        let mut cut = movie(b"soun", &v0);
        cut.truncate(cut.len() - 10);
        assert_eq!(priming_frames(&cut, 22_050), None);
        // A count larger than the entries present: the first entry (media_time 0) is read.
        let lying = [&[0u8, 0, 0, 0, 0, 0, 0, 9][..], &[0; 12]].concat();
        assert_eq!(priming_frames(&movie(b"soun", &lying), 22_050), Some(0));
    }
}
