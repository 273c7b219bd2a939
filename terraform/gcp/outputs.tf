output "bootstrap_address" {
  description = "host:port for the clients' bootstrap.servers (the load balancer's IP)."
  value       = "${google_compute_forwarding_rule.kafka.ip_address}:${var.kafka_port}"
}

output "bucket_name" {
  description = "Name of the GCS bucket holding the segment objects."
  value       = google_storage_bucket.segments.name
}

output "bucket_url" {
  description = "The --bucket URL the agents use, for running floe commands (migrate, bench) elsewhere."
  value       = local.bucket_url
}

output "catalog_endpoint" {
  description = "host:port of the Cloud SQL catalog's private IP."
  value       = "${google_sql_database_instance.catalog.private_ip_address}:5432"
}

output "catalog_connection_name" {
  description = "Cloud SQL connection name of the catalog (project:region:instance), for the Cloud SQL Auth Proxy."
  value       = google_sql_database_instance.catalog.connection_name
}

output "catalog_password_secret" {
  description = "Secret Manager secret holding the catalog password (read it with gcloud secrets versions access latest)."
  value       = google_secret_manager_secret.catalog_password.id
}

output "cluster_name" {
  description = "The Floe cluster name (--cluster) of the agents."
  value       = local.cluster
}

output "instance_group" {
  description = "URL of the agents' regional managed instance group."
  value       = google_compute_region_instance_group_manager.agents.instance_group
}

output "service_account_email" {
  description = "Service account the agents run as."
  value       = google_service_account.agent.email
}
