"""What a message says besides its topic: a request for a person, anger, and slots.

Lexicons, not a model: the phrases customers use to ask for a human or to complain are few and
stable, a miss costs a frustrated customer, and every rule here can be read and tested. Chinese
and English; the text is NFKC-normalised and lower-cased first (text.normalize).
"""

from __future__ import annotations

import re

from .text import normalize

_HUMAN = re.compile(
    "|".join(
        [
            r"转人工", r"人工(客服|服务|坐席|座席)?", r"真人", r"找(个|你们的?)?(人|客服|经理|主管|领导|负责人)",
            r"(叫|让|请|换)(你们)?(的)?(经理|主管|领导|负责人|客服|真人)", r"客服(小姐姐|小哥|人员)?在吗",
            r"不(要|想)(跟|和)?(机器人|机器|ai|bot)", r"(机器人|智能客服).{0,6}(没用|听不懂|答非所问)",
            r"\b(talk|speak|chat)\s+(to|with)\s+(a|an|some)?\s*(human|person|agent|real person|manager|supervisor|representative|someone)",
            r"\b(human|live|real)\s+(agent|person|support|representative|help)\b", r"\bagent\s+please\b",
            r"\b(get|give|connect|transfer)\s+me\s+(to\s+)?(a|an)?\s*(human|person|agent|manager|representative|someone)",
            r"\bnot\s+(a\s+)?(bot|robot|machine)\b", r"\b(your|the)\s+manager\b", r"\boperator\b",
        ]
    )
)

# (pattern, weight): the sum over matches is the anger score; threats count at once
_NEGATIVE = [
    (re.compile(r"投诉|举报|12315|消协|消费者协会|工商局|曝光|媒体"), 3),
    (re.compile(r"律师|起诉|法院|报警|警察|诉讼|维权"), 3),
    (re.compile(r"骗子|诈骗|欺诈|坑人|黑心|垃圾|混蛋|去死|滚|妈的|他妈|tmd|什么破"), 2),
    (re.compile(r"气死|愤怒|太过分|受够了|忍无可忍|恶心|无语|失望透顶|太差|差劲|离谱|搞什么"), 2),
    (re.compile(r"到底|究竟|怎么回事|为什么还|还没|又是|一直|多少次|第[二三四五几]次"), 1),
    (re.compile(r"\b(lawyer|lawsuit|sue|suing|court|police|attorney|legal action|chargeback|regulator)\b"), 3),
    (re.compile(r"\b(complain|complaint|report you|scam|scammer|fraud|rip[- ]?off)\b"), 3),
    (re.compile(r"\b(furious|angry|outraged|disgusted|pissed|ridiculous|unacceptable|terrible|worst|useless|"
                r"pathetic|horrible|awful|incompetent|shit|shitty|damn|wtf|hate)\b"), 2),
    (re.compile(r"\b(still not|yet again|again\?|how many times|fed up|sick of|for weeks|never arrived)\b"), 1),
    (re.compile(r"[!！]{2,}|[?？]{3,}"), 1),
]
_SAFETY = re.compile(r"自杀|不想活|跳楼|爆炸|起火|着火|冒烟|触电|受伤|烫伤|\b(suicide|kill myself|fire|smoke|explod\w*|"
                     r"injur\w*|electric shock|burn(ed|t)?)\b")
ANGER_THRESHOLD = 3  # a legal threat alone, a complaint alone, or insult + exasperation

# slots -------------------------------------------------------------------------------------
_ORDER_ID = re.compile(r"(?:订单号?|单号|order\s*(?:number|no\.?|id|#)?)\s*(?:是|为|is|:|：|#)?\s*([a-z]{0,4}\d[a-z0-9-]{5,23})"
                       r"|(?<![\w-])(\d{10,20})(?![\w-])")
_TRACKING = re.compile(r"(?:物流单号|快递单号|运单号|退货单号|tracking\s*(?:number|no\.?|#)?)\s*(?:是|为|:|：|#)?\s*"
                       r"([a-z]{0,4}\d{8,20})")
_RETURN_REQUESTED = re.compile(r"(已经|已|刚刚?|早就)(申请|提交|办理|寄回|退回)了?(退货|退款|退换)?|退货(申请)?(已经)?(提交|申请)了"
                               r"|\b(already|have|has|i've|ive|just)\s+(requested|applied for|submitted|filed|started|sent)\s+"
                               r"(a|the|my)?\s*(return|refund)")


def wants_human(text: str) -> bool:
    return bool(_HUMAN.search(normalize(text)))


def anger(text: str) -> int:
    """Strong negative sentiment score: >= ANGER_THRESHOLD hands off whatever the match."""
    lowered = normalize(text)
    return sum(weight for pattern, weight in _NEGATIVE if pattern.search(lowered))


def safety_risk(text: str) -> bool:
    return bool(_SAFETY.search(normalize(text)))


def slots(text: str) -> dict:
    """Slots a message fills: order_id, return_tracking, return_requested."""
    lowered = normalize(text)
    found: dict = {}
    tracking = _TRACKING.search(lowered)
    if tracking:
        found["return_tracking"] = tracking.group(1).upper()
    order = _ORDER_ID.search(_TRACKING.sub(" ", lowered))
    if order:
        found["order_id"] = (order.group(1) or order.group(2)).upper()
    if _RETURN_REQUESTED.search(lowered):
        found["return_requested"] = True
    return found


# personal data that must not travel from a conversation into the knowledge base or reports -------
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(r"(?<!\d)(\+?\d[\d -]{7,}\d)(?!\d)")
_LONG_ID = re.compile(r"(?<![A-Za-z0-9-])[A-Za-z]{0,4}-?\d[A-Za-z0-9-]{4,23}(?![A-Za-z0-9-])")


def redact(text: str) -> str:
    """The text without e-mail addresses, phone numbers, order / tracking numbers and other long ids:
    what the bot keeps of a customer's question (misses, answers saved by agents) must not identify them."""
    text = _EMAIL.sub("", text)
    text = _LONG_ID.sub("", text)
    text = _PHONE.sub("", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()
