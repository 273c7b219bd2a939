# The agents' service account: object read, write, list and delete on the
# one bucket (and reading its metadata, which the agents check at start),
# access to the one catalog password secret, and log and metric
# writing for the VM's agents. Nothing project-wide beyond that.

resource "google_service_account" "agent" {
  project      = var.project_id
  account_id   = "${var.name}-agent"
  display_name = "Floe agents (${local.cluster})"
}

resource "google_storage_bucket_iam_member" "agent_objects" {
  bucket = google_storage_bucket.segments.name
  role   = "roles/storage.objectUser"
  member = google_service_account.agent.member
}

# The agent checks the bucket at start (storage.buckets.get), which
# objectUser does not grant; this role adds only that and objects.list.
resource "google_storage_bucket_iam_member" "agent_bucket" {
  bucket = google_storage_bucket.segments.name
  role   = "roles/storage.legacyBucketReader"
  member = google_service_account.agent.member
}

resource "google_secret_manager_secret_iam_member" "agent_catalog_password" {
  project   = var.project_id
  secret_id = google_secret_manager_secret.catalog_password.secret_id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.agent.member
}

resource "google_project_iam_member" "agent_telemetry" {
  for_each = toset(["roles/logging.logWriter", "roles/monitoring.metricWriter"])

  project = var.project_id
  role    = each.value
  member  = google_service_account.agent.member
}
