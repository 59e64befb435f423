"""Writes the ATS webhook sample payloads in this directory (used by tests/ats.rs).

Each payload follows its vendor's documented webhook envelope (Greenhouse `{"action",
"payload"}` with its custom-field form and \u003c-escaped body; Ashby `{"action", "data"}`;
Lever `{"triggeredAt", "event", "signature", "token", "data"}`), plus the inline transcript
fields grader reads. The Lever signatures inside the files, the Greenhouse signature and the
Standard Webhooks known-answer vector hard-coded in tests/ats.rs are printed/computed here
with Python's hmac/hashlib/base64. Run: python3 tests/data/ats/generate.py
"""
import json, hmac, hashlib, base64, os
D=os.path.dirname(os.path.abspath(__file__))
def w(path, text):
    with open(os.path.join(D,path),'w') as f: f.write(text)

# ---------------- Greenhouse ----------------
gh_candidate = {
  "id": 265772, "first_name": "Zo\u00eb", "last_name": "Okafor", "title": "ML Engineer", "company": None,
  "created_at": "2025-11-04T01:24:44Z", "external_id": None, "photo_url": None,
  "url": "https://app.greenhouse.io/people/265772", "is_private": False, "can_email": True,
  "phone_numbers": [{"value": "330-281-8004", "type": "mobile"}],
  "email_addresses": [{"value": "zoe.okafor@example.com", "type": "personal"}, {"value": "zoe@work.example.com", "type": "work"}],
  "addresses": [], "website_addresses": [], "social_media_addresses": [],
  "attachments": [{"filename": "resume.pdf", "url": "https://prod-heroku.s3.amazonaws.com/resume.pdf", "type": "resume"}],
  "tags": ["LLM"], "custom_fields": {"desired_level": {"name": "Desired Level", "type": "short_text", "value": "Senior"}}
}
transcript_sd = (
 "Interviewer: Design a support assistant over 2M help-center articles. What's your latency budget?\n"
 "Candidate: I'd keep p95 end-to-end latency < 2 s: hybrid retrieval (BM25 & dense) with top-k <= 50, "
 "then a cross-encoder re-ranker on the top 20. Chunks of ~400 tokens split on headings, with <title> and "
 "breadcrumb prepended.\n"
 "Interviewer: What happens when the primary model times out?\n"
 "Candidate: Fall back to a smaller model behind a circuit breaker, and answer \"I don't know\" when the "
 "retrieval score is below threshold. I'd track faithfulness on a golden set of 300 questions in CI.\n")
gh = {
 "action": "candidate_stage_change",
 "payload": {"application": {
   "id": 265277, "rejected_at": None, "prospect": False, "status": "active",
   "applied_at": "2025-11-04T00:00:00Z", "last_activity_at": "2026-01-01T00:00:00Z",
   "url": "https://app.greenhouse.io/people/265772?application_id=265277",
   "source": {"id": 31, "name": "Referral"}, "credited_to": {"id": 15, "email": "ada@example.com", "name": "Ada Lacey", "employee_id": "123ABC"},
   "rejection_reason": None, "rejection_details": None,
   "current_stage": {"id": 71416, "name": "System Design: LLM Architecture", "interviews": [
      {"id": 113101, "name": "System Design: LLM Architecture", "status": "complete",
       "interview_kit": {"url": "https://app.greenhouse.io/guides/113153/people/265772", "content": "<p>RAG design, 60 min</p>", "questions": []},
       "interviewers": [{"id": 2622, "display_name": "Carl Buddha", "status": "accepted"}]}]},
   "custom_fields": {
      "interview_transcript": {"name": "Interview Transcript", "type": "long_text", "value": transcript_sd},
      "custom_application_field": {"name": "Custom Application Field", "type": "short_text", "value": None}},
   "candidate": gh_candidate,
   "jobs": [{"id": 3485, "name": "Senior LLM Engineer", "requisition_id": "REQ-42", "confidential": False, "status": "open"}]
 }}}
# Greenhouse (Rails) escapes <, >, & and non-ASCII before signing.
def gh_dump(o):
    s = json.dumps(o, separators=(',', ':'), ensure_ascii=True)
    return s.replace('<', '\\u003c').replace('>', '\\u003e').replace('&', '\\u0026')
body = gh_dump(gh)
assert '\\u003c' in body
w('greenhouse/stage_change_transcript.json', body)
sig = hmac.new(b'gh-webhook-secret-5e1d0c', body.encode(), hashlib.sha256).hexdigest()
print('greenhouse stage_change_transcript sig', sig)

vtt = ("WEBVTT\n\n00:00:01.000 --> 00:00:06.000\n<v Interviewer>Walk me through how you would build the retrieval step.\n\n"
       "00:00:06.500 --> 00:00:20.000\n<v Candidate>I start with a baseline: chunk by section, embed, top-5 cosine. Then I measure recall@5 on 100 labelled questions before adding a re-ranker.\n\n"
       "00:00:21.000 --> 00:00:25.000\n<v Interviewer>And the prompt?\n\n"
       "00:00:25.500 --> 00:00:40.000\n<v Candidate>A system prompt with the citation format, few-shot examples, and an explicit instruction to refuse when the context lacks the answer.\n")
gh2 = {"action": "interview_transcript_ready", "payload": {
  "interview": {"id": 31087450, "name": "Hands-On: RAG & Prompt Engineering", "status": "complete",
                "transcript_format": "vtt", "transcript": vtt},
  "application": {"id": 265280, "candidate": {"id": 265790, "first_name": "Ravi", "last_name": "Menon",
        "email_addresses": [{"value": "ravi.menon@example.com", "type": "personal"}]},
        "current_stage": {"id": 71417, "name": "Onsite"}, "jobs": [{"id": 3485, "name": "Senior LLM Engineer"}]}}}
w('greenhouse/interview_transcript.json', gh_dump(gh2))

gh3 = json.loads(json.dumps(gh))
gh3["payload"]["application"]["custom_fields"]["interview_transcript"] = {"name": "Interview Transcript", "type": "url", "value": "https://files.example.com/transcripts/265277.vtt"}
w('greenhouse/link_only.json', gh_dump(gh3))

gh4 = json.loads(json.dumps(gh))
gh4["payload"]["application"]["current_stage"]["name"] = "Assessment"
gh4["payload"]["application"]["current_stage"]["interviews"][0]["name"] = "Assessment"
w('greenhouse/missing_stage.json', gh_dump(gh4))
w('greenhouse/ping.json', gh_dump({"action": "ping", "payload": {"web_hook_id": 12345}}))

# ---------------- Ashby ----------------
ash_transcript = ("Interviewer: When would you fine-tune instead of improving retrieval?\n"
 "Candidate: Only when the failure is about form or style, not missing knowledge. For factual gaps I fix retrieval first. "
 "If we fine-tune, I'd use LoRA on a few thousand curated examples and hold out an eval set.\n"
 "Interviewer: How do you know the fine-tune helped?\n"
 "Candidate: Compare against the base model on the held-out set with an LLM judge calibrated against human labels, "
 "plus a regression suite so we don't lose general capability.\n")
ash = {"action": "candidateStageChange", "data": {"application": {
   "id": "0d9d1f0e-6c4a-4a55-9f0a-3c2b7c1e8a11", "createdAt": "2025-12-01T10:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z",
   "status": "Active",
   "customFields": [
      {"id": "8b1c7c55-1111-4f3e-9a61-5a2b9f0c0001", "title": "Interview Transcript", "value": ash_transcript},
      {"id": "8b1c7c55-1111-4f3e-9a61-5a2b9f0c0002", "title": "Hiring Manager Notes", "value": "strong on evals"}],
   "candidate": {"id": "5f3c8d2a-2222-4b1e-8c3d-9e0f1a2b3c4d", "name": "Mar\u00eda Garc\u00eda",
      "primaryEmailAddress": {"value": "maria.garcia@example.com", "type": "Personal", "isPrimary": True},
      "primaryPhoneNumber": {"value": "+1 555 0100", "type": "Mobile", "isPrimary": True}},
   "currentInterviewStage": {"id": "c1d2e3f4-3333-4a5b-8c7d-000000000004", "title": "Deep Dive: Fine-Tuning & Evaluation",
      "type": "Active", "orderInInterviewPlan": 4, "interviewStageGroupId": "g-1", "interviewPlanId": "p-1"},
   "source": {"id": "s-1", "title": "LinkedIn", "isArchived": False},
   "archiveReason": None,
   "job": {"id": "9a8b7c6d-4444-4e5f-8a9b-0c1d2e3f4a5b", "title": "Senior LLM Engineer", "locationId": "l-1", "departmentId": "d-1"},
   "creditedToUser": {"id": "u-1", "firstName": "Sam", "lastName": "Lee", "email": "sam@example.com", "globalRole": "Organization Admin", "isEnabled": True}
}}}
w('ashby/candidate_stage_change.json', json.dumps(ash, indent=2, ensure_ascii=False) + "\n")
ash2 = json.loads(json.dumps(ash))
ash2["data"]["application"]["customFields"] = [{"id": "x", "title": "Hiring Manager Notes", "value": "see recording"}]
ash2["data"]["interview"] = {"id": "i-77", "title": "Deep Dive: Fine-Tuning & Evaluation",
   "recordingUrl": "https://us02web.zoom.example/rec/share/abc", "transcriptUrl": "https://notes.example.com/t/i-77"}
w('ashby/link_only.json', json.dumps(ash2, indent=2, ensure_ascii=False) + "\n")
ash3 = json.loads(json.dumps(ash))
ash3["data"]["application"]["currentInterviewStage"]["title"] = "Onsite"
w('ashby/missing_stage.json', json.dumps(ash3, indent=2, ensure_ascii=False) + "\n")
w('ashby/ping.json', json.dumps({"action": "ping", "data": {"webhookActionType": "candidateStageChange"}}) + "\n")

# ---------------- Lever ----------------
LEVER_SECRET = b'lever-signature-token-3b9c1e7f'
TRIGGERED = 1767225600000  # 2026-01-01T00:00:00Z
def lever(token, event, data, triggered=TRIGGERED):
    sig = hmac.new(LEVER_SECRET, (token + str(triggered)).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"triggeredAt": triggered, "event": event, "signature": sig, "token": token, "data": data}, indent=2) + "\n"
turns = [
  {"speaker": "Interviewer", "text": "A user pastes 'ignore previous instructions' into the chatbot. What do you do?", "start": 0.0, "end": 5.5},
  {"speaker": "Candidate", "text": "Treat user content as data: delimit it, never put it in the system prompt, and run an injection classifier on inputs and tool outputs.", "start": 6.0, "end": 18.0},
  {"speaker": "Interviewer", "text": "And PII?", "start": 18.5, "end": 19.5},
  {"speaker": "Candidate", "text": "Redact before logging, keep an audit trail, and add output guardrails that block emails and phone numbers.", "start": 20.0, "end": 31.0},
]
lever_data = {"opportunityId": "250d8f03-738a-4bba-a671-8a3d73477145", "candidateId": "250d8f03-738a-4bba-a671-8a3d73477145",
  "contactId": "7f7cb2b7-4b4c-4b8d-9f49-0a1c3e5d7b9f", "interviewId": "b9c1e7f0-5555-4a2b-8c3d-4e5f6a7b8c9d",
  "panelId": "a1b2c3d4-6666-4e5f-8a9b-0c1d2e3f4a5b",
  "interview": {"id": "b9c1e7f0-5555-4a2b-8c3d-4e5f6a7b8c9d", "subject": "Production Readiness & Safety",
                "date": 1767222000000, "duration": 45, "transcript": turns},
  "contact": {"id": "7f7cb2b7-4b4c-4b8d-9f49-0a1c3e5d7b9f", "name": "Wei Chen", "emails": ["wei.chen@example.com"]}}
w('lever/interview_updated.json', lever("8f1c2d3e4b5a69788796a5b4c3d2e1f0", "interviewUpdated", lever_data))
w('lever/ping.json', lever("0a1b2c3d4e5f60718293a4b5c6d7e8f9", "test", {}))
ld2 = json.loads(json.dumps(lever_data)); del ld2["interview"]["transcript"]; ld2["interview"]["transcriptUrl"] = "https://lever.example.com/transcripts/b9c1e7f0.txt"
w('lever/link_only.json', lever("1b2c3d4e5f60718293a4b5c6d7e8f90a", "interviewUpdated", ld2))
ld3 = json.loads(json.dumps(lever_data)); ld3["interview"]["subject"] = "Onsite loop"
w('lever/missing_stage.json', lever("2c3d4e5f60718293a4b5c6d7e8f90a1b", "interviewUpdated", ld3))

# ---------------- Standard ----------------
std = {"stage": "hands_on", "transcript": [
   {"speaker": "Interviewer", "text": "How would you evaluate this RAG pipeline?"},
   {"speaker": "Candidate", "text": "Retrieval recall@k on labelled queries, then answer faithfulness with a judge we calibrate against humans."}],
   "prompt": "hands_on", "candidate": {"name": "Ana Souza", "email": "ana.souza@example.com"},
   "external_id": "req-42/app-9001", "metadata": {"requisition": "REQ-42", "interviewers": ["Kim"]}}
w('standard/submission.json', json.dumps(std, indent=2) + "\n")
w('standard/ping.json', json.dumps({"type": "ping", "timestamp": "2026-01-01T00:00:00Z", "data": {}}) + "\n")
w('standard/link_only.json', json.dumps({"stage": "system_design", "transcript_url": "https://files.example.com/t/9001.vtt", "candidate": {"name": "Ana Souza"}}, indent=2) + "\n")
w('standard/missing_stage.json', json.dumps({"transcript": "Interviewer: Why?\nCandidate: Because evals.\n"}, indent=2) + "\n")
w('standard/envelope.json', json.dumps({"type": "submission.created", "timestamp": "2026-01-01T00:00:00Z", "data": {
   "stage": "written_answer", "question": "When would you fine-tune rather than use RAG?",
   "answer": "Fine-tune for behaviour and format; use RAG for knowledge that changes. I would try prompting and retrieval first, then fine-tune only with an eval set showing the gap."}}, indent=2) + "\n")

# Known-answer vector for the Standard Webhooks signature (hand-computed here).
key = b'grader-standard-webhooks-test-key-0001'
secret = 'whsec_' + base64.b64encode(key).decode()
msg_id = 'msg_2Zgrader0kat'
ts = 1767225600
payload = b'{"stage":"system_design","transcript":"Candidate: I would add a re-ranker."}'
sig = base64.b64encode(hmac.new(key, msg_id.encode() + b'.' + str(ts).encode() + b'.' + payload, hashlib.sha256).digest()).decode()
print('standard KAT secret', secret, 'sig v1,' + sig)
