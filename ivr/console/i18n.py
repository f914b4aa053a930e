"""The console's words, Japanese first and English second, and the page language.

A page's language is the person's choice kept in the session (the ja/en switch in
base.html), else Japanese. Messages are looked up by key; a key missing in English falls
back to Japanese, and a key missing in both shows itself, so a gap is visible in review.
"""

from __future__ import annotations

from typing import Any

LANGS = ("ja", "en")

MESSAGES: dict[str, dict[str, str]] = {
    "ja": {
        "app": "インシデント対応コンソール", "signin": "サインイン", "signout": "サインアウト",
        "login": "ログインID", "password": "パスワード",
        "signin_failed": "ログインIDまたはパスワードが正しくありません。",
        "signin_locked": "試行回数が多すぎます。しばらくしてからお試しください。",
        "board": "インシデント一覧", "live": "ライブビュー", "active": "対応中",
        "resolved_list": "解決済み", "declare": "インシデントを宣言",
        "title": "タイトル", "severity": "重大度", "status": "状況", "since": "発生",
        "next_update": "次回更新", "countdown_due": "期限超過", "eta": "復旧見込み",
        "eta_help": "空欄なら「確認中」", "eta_unknown": "確認中",
        "audience": "対象", "scope_services": "対象サービス（空白区切り）",
        "scope_regions": "対象地域（空白区切り）", "scope_numbers": "対象電話番号（1行に1件）",
        "announcement_ja": "アナウンス（日本語）", "announcement_en": "アナウンス（英語）",
        "notify": "SMSで通知する", "calls": "着信", "affected_calls": "影響あり着信",
        "escalations": "エスカレーション", "sms_sent": "SMS送信", "sms_failed": "SMS失敗",
        "sms_delivered": "SMS到達", "none": "なし", "save": "保存", "preview": "プレビュー",
        "edit": "編集", "post_update": "経過報告を送信", "message_ja": "報告（日本語）",
        "message_en": "報告（英語）", "resolve": "解決として終了",
        "resolve_message_ja": "終了のお知らせ（日本語）",
        "resolve_message_en": "終了のお知らせ（英語）",
        "timeline": "タイムライン", "by": "実施者", "at": "日時", "what": "内容",
        "heard": "発信者が聞く内容", "voice": "音声", "recording": "録音",
        "sms_preview": "SMSプレビュー", "encoding": "文字コード", "segments": "分割数",
        "recipients": "宛先数", "units": "分割数×宛先数", "upper_bound": "（上限の見積り）",
        "kind_declared": "第一報", "kind_update": "経過報告", "kind_resolved": "終了のお知らせ",
        "kind_auto": "自動経過報告", "kind_edited": "編集", "kind_held": "夜間保留",
        "saved": "保存しました。", "declared": "インシデントを宣言しました。",
        "update_posted": "経過報告を送信しました。", "resolved_done": "解決として終了しました。",
        "field_error": "「{label}」を確認してください",
        "form_errors": "入力内容を確認してください。",
        "not_found": "見つかりません。", "forbidden": "この操作の権限がありません。",
        "bad_request": "リクエストが正しくありません。フォームを開き直してください。",
        "unavailable": "一時的に利用できません。しばらくしてから再度お試しください。",
        "active_calls": "通話中", "waiting": "待ち呼", "band_priority": "優先",
        "band_affected": "影響あり・VIP", "band_other": "その他", "caller": "発信者",
        "tags": "タグ", "state": "状態", "waited": "待ち時間", "seconds": "秒",
        "attempt": "試行", "ringing": "呼出中", "accepted_by": "応答者", "reason": "理由",
        "raised_by": "依頼者", "fan_out": "SMS配信状況", "update_no": "報告 #{seq}",
        "halted": "停止中", "updated_at": "更新", "live_help": "数秒ごとに自動更新されます。",
        "who": "誰が", "what5": "何を", "where": "どこで", "when": "いつ", "how": "状況",
        "why": "理由", "sev_critical": "緊急", "sev_major": "重大", "sev_minor": "軽微",
        "st_investigating": "調査中", "st_identified": "原因特定", "st_monitoring": "経過観察",
        "st_resolved": "解決", "aud_all": "全ての発信者", "aud_affected": "影響のある方のみ",
        "no_incidents": "対応中のインシデントはありません。", "language": "言語",
        "skip": "本文へ移動", "error": "エラー", "back": "一覧へ戻る", "minutes": "分",
        "in_minutes": "あと{n}分", "overdue_minutes": "{n}分超過",
    },
    "en": {
        "app": "Incident console", "signin": "Sign in", "signout": "Sign out",
        "login": "Login", "password": "Password",
        "signin_failed": "The login or the password is not right.",
        "signin_locked": "Too many attempts. Please try again later.",
        "board": "Incidents", "live": "Live view", "active": "Active",
        "resolved_list": "Resolved", "declare": "Declare an incident",
        "title": "Title", "severity": "Severity", "status": "Status", "since": "Since",
        "next_update": "Next update", "countdown_due": "overdue", "eta": "Expected recovery",
        "eta_help": "Empty means \"being confirmed\"", "eta_unknown": "being confirmed",
        "audience": "Audience", "scope_services": "Services (space separated)",
        "scope_regions": "Regions (space separated)", "scope_numbers": "Numbers (one a line)",
        "announcement_ja": "Announcement (Japanese)", "announcement_en": "Announcement (English)",
        "notify": "Notify by SMS", "calls": "Calls", "affected_calls": "Affected calls",
        "escalations": "Escalations", "sms_sent": "SMS sent", "sms_failed": "SMS failed",
        "sms_delivered": "SMS delivered", "none": "none", "save": "Save",
        "preview": "Preview", "edit": "Edit", "post_update": "Post the update",
        "message_ja": "Update (Japanese)", "message_en": "Update (English)",
        "resolve": "Resolve", "resolve_message_ja": "Closing message (Japanese)",
        "resolve_message_en": "Closing message (English)",
        "timeline": "Timeline", "by": "By", "at": "At", "what": "What",
        "heard": "What a caller hears", "voice": "Voice", "recording": "Recording",
        "sms_preview": "SMS preview", "encoding": "Encoding", "segments": "Segments",
        "recipients": "Recipients", "units": "Segments × recipients",
        "upper_bound": "(upper bound)", "kind_declared": "First report",
        "kind_update": "Update", "kind_resolved": "Closing message", "kind_auto": "Auto update",
        "kind_edited": "Edited", "kind_held": "Held (quiet hours)", "saved": "Saved.",
        "declared": "Incident declared.", "update_posted": "Update posted.",
        "resolved_done": "Incident resolved.", "field_error": "Check “{label}”",
        "form_errors": "Please check the form.", "not_found": "Not found.",
        "forbidden": "You may not do this.",
        "bad_request": "The request was not valid. Please open the form again.",
        "unavailable": "Temporarily unavailable. Please try again shortly.",
        "active_calls": "Active calls", "waiting": "Waiting", "band_priority": "Priority",
        "band_affected": "Affected / VIP", "band_other": "Others", "caller": "Caller",
        "tags": "Tags", "state": "State", "waited": "Waited", "seconds": "s",
        "attempt": "Attempt", "ringing": "Ringing", "accepted_by": "Accepted by",
        "reason": "Reason", "raised_by": "Raised by", "fan_out": "SMS fan-out",
        "update_no": "Update #{seq}", "halted": "halted", "updated_at": "Updated",
        "live_help": "Refreshes itself every few seconds.", "who": "Who", "what5": "What",
        "where": "Where", "when": "When", "how": "How", "why": "Why",
        "sev_critical": "Critical", "sev_major": "Major", "sev_minor": "Minor",
        "st_investigating": "Investigating", "st_identified": "Identified",
        "st_monitoring": "Monitoring", "st_resolved": "Resolved", "aud_all": "Every caller",
        "aud_affected": "Affected callers only", "no_incidents": "No active incident.",
        "language": "Language", "skip": "Skip to content", "error": "Error",
        "back": "Back to the board", "minutes": "min", "in_minutes": "in {n} min",
        "overdue_minutes": "{n} min overdue",
    },
}


def translate(lang: str, key: str, **values: Any) -> str:
    """The message `key` in `lang` (Japanese when English lacks it), with {values} filled."""
    text = MESSAGES.get(lang, {}).get(key) or MESSAGES["ja"].get(key) or key
    return text.format(**values) if values else text
